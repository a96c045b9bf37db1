package certs

import (
	"crypto"
	_ "crypto/sha256" // crypto.SHA256
	_ "crypto/sha512" // crypto.SHA384, crypto.SHA512
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// TLSExporter returns the RFC 9266 "tls-exporter" channel-binding value of a
// connection: 32 bytes exported with the label "EXPORTER-Channel-Binding" and
// no context. It fails before the handshake has completed and on TLS 1.2
// connections without the extended master secret extension, where the value
// would not be unique to the connection (crypto/tls refuses those itself).
func TLSExporter(cs tls.ConnectionState) ([]byte, error) {
	if !cs.HandshakeComplete {
		return nil, errors.New("certs: tls-exporter: handshake not complete")
	}
	b, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		return nil, fmt.Errorf("certs: tls-exporter: %w", err)
	}
	return b, nil
}

// TLSServerEndPoint returns the RFC 5929 section 4.1 "tls-server-end-point"
// channel-binding value for the server certificate: the hash of its DER
// encoding with the hash of its signature algorithm, SHA-256 when that is MD5
// or SHA-1. It returns nil when cert is nil or its signature algorithm does
// not use a single hash function (for example Ed25519), for which RFC 5929
// defines no value.
func TLSServerEndPoint(cert *x509.Certificate) []byte {
	if cert == nil {
		return nil
	}
	var h crypto.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256, x509.DSAWithSHA256:
		h = crypto.SHA256
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = crypto.SHA512
	default:
		return nil
	}
	d := h.New()
	d.Write(cert.Raw)
	return d.Sum(nil)
}
