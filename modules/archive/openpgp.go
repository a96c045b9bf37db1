package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// pgpConfig makes v4 EdDSA (Ed25519) keys and SHA-256 signatures, which
// GnuPG 2.2 and later verify.
var pgpConfig = &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}

// LoadOrCreateOpenPGP returns the archive's OpenPGP signing key (it signs
// export manifests), kept armored and unencrypted in path; a new key with
// user ID "name" is created there (mode 0600) when the file is missing.
func LoadOrCreateOpenPGP(path, name string) (*openpgp.Entity, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		e, err := openpgp.NewEntity(name, "Palisade compliance archive", "", pgpConfig)
		if err != nil {
			return nil, fmt.Errorf("archive: generate OpenPGP key: %w", err)
		}
		var buf bytes.Buffer
		w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
		if err == nil {
			err = e.SerializePrivate(w, pgpConfig)
		}
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("archive: serialize OpenPGP key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("archive: OpenPGP key: %w", err)
		}
		if err := writeFileSync(path, buf.Bytes(), 0o600, true); err != nil {
			return nil, fmt.Errorf("archive: write OpenPGP key: %w", err)
		}
		return e, nil
	} else if err != nil {
		return nil, fmt.Errorf("archive: read OpenPGP key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("archive: OpenPGP key %s is readable by other users (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("archive: OpenPGP key %s: %w", path, err)
	}
	if len(el) != 1 || el[0].PrivateKey == nil || el[0].PrivateKey.Encrypted {
		return nil, fmt.Errorf("archive: OpenPGP key %s must hold one unencrypted private key", path)
	}
	return el[0], nil
}

// ArmoredPublicKey returns e's public key, ASCII-armored.
func ArmoredPublicKey(e *openpgp.Entity) ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := e.Serialize(w); err != nil {
		return nil, fmt.Errorf("archive: serialize OpenPGP public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// signDetached returns an ASCII-armored detached signature of data.
func signDetached(e *openpgp.Entity, data io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&buf, e, data, pgpConfig); err != nil {
		return nil, fmt.Errorf("archive: OpenPGP signature: %w", err)
	}
	return buf.Bytes(), nil
}

// checkDetached checks an armored detached signature against armored
// public keys and returns the signer's fingerprint.
func checkDetached(pubKeys, data, sig []byte) (string, error) {
	kr, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(pubKeys))
	if err != nil {
		return "", fmt.Errorf("OpenPGP key: %w", err)
	}
	signer, err := openpgp.CheckArmoredDetachedSignature(kr, bytes.NewReader(data), bytes.NewReader(sig), nil)
	if err != nil {
		return "", fmt.Errorf("OpenPGP signature: %w", err)
	}
	return fmt.Sprintf("%X", signer.PrimaryKey.Fingerprint), nil
}
