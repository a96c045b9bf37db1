package archive

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/palisade-im/palisade/storage"
)

// Officer encryption at rest (archive.officer_keys): per-record OpenPGP is
// too slow for the message path, so record content is sealed with
// AES-256-GCM under a data key per epoch (a UTC day, at most
// maxEpochRecords records, and a new one at every start), and each epoch
// key is stored only wrapped to the officer keys with OpenPGP. The server
// never keeps a usable key after rotating: what it wrote, only an officer
// can read. Metadata (time, parties, kind, type, id, size) stays in the
// clear and searchable.

// maxEpochRecords bounds the records sealed under one key (random 96-bit
// nonces stay far from their collision bound).
const maxEpochRecords = 1 << 20

// ReadOpenPGPKeys reads OpenPGP keys, armored or binary, from files; each
// file must hold at least one key.
func ReadOpenPGPKeys(files []string) (openpgp.EntityList, error) {
	var all openpgp.EntityList
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("archive: OpenPGP key: %w", err)
		}
		var list openpgp.EntityList
		if bytes.Contains(data, []byte("-----BEGIN PGP")) {
			list, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
		} else {
			list, err = openpgp.ReadKeyRing(bytes.NewReader(data))
		}
		if err != nil {
			return nil, fmt.Errorf("archive: OpenPGP key %s: %w", f, err)
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("archive: OpenPGP key %s: no key in the file", f)
		}
		all = append(all, list...)
	}
	return all, nil
}

// ReadOfficerKeys reads the officer public keys; each must be able to
// encrypt.
func ReadOfficerKeys(files []string) (openpgp.EntityList, error) {
	keys, err := ReadOpenPGPKeys(files)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if _, ok := k.EncryptionKey(time.Now()); !ok {
			return nil, fmt.Errorf("archive: officer key %X has no valid encryption key", k.PrimaryKey.Fingerprint)
		}
	}
	return keys, nil
}

// Sealer seals record content for the journal under the current epoch key.
type Sealer struct {
	officers openpgp.EntityList
	store    storage.EpochKeys

	mu   sync.Mutex
	id   string
	aad  []byte
	aead cipher.AEAD
	day  int64
	n    int64
}

// NewSealer seals to the officers, storing each new epoch key in store.
func NewSealer(officers openpgp.EntityList, store storage.EpochKeys) *Sealer {
	return &Sealer{officers: officers, store: store}
}

// Seal appends nonce || ciphertext of plain to dst and returns the record's
// enc value. A new epoch key is made, wrapped and stored durably first when
// the day changed or the epoch is full.
func (s *Sealer) Seal(ctx context.Context, t time.Time, dst, plain []byte) (enc string, out []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	day := t.UTC().Unix() / 86400
	if s.aead == nil || day != s.day || s.n >= maxEpochRecords {
		if err := s.rotate(ctx, t); err != nil {
			return "", dst, err
		}
	}
	s.n++
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", dst, fmt.Errorf("archive: nonce: %w", err)
	}
	dst = append(dst, nonce[:]...)
	dst = s.aead.Seal(dst, nonce[:], plain, s.aad)
	return EncAESGCMPrefix + s.id, dst, nil
}

func (s *Sealer) rotate(ctx context.Context, t time.Time) error {
	var key [32]byte
	var rnd [6]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("archive: epoch key: %w", err)
	}
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("archive: epoch key: %w", err)
	}
	id := t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(rnd[:])
	var wrapped bytes.Buffer
	w, err := openpgp.Encrypt(&wrapped, s.officers, nil, &openpgp.FileHints{IsBinary: true}, nil)
	if err == nil {
		_, err = w.Write(key[:])
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return fmt.Errorf("archive: wrap epoch key to the officer keys: %w", err)
	}
	if err := s.store.AddEpochKey(ctx, storage.EpochKey{ID: id, Created: t, Wrapped: wrapped.Bytes()}); err != nil {
		return fmt.Errorf("archive: store epoch key: %w", err)
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	s.id, s.aad, s.aead, s.day, s.n = id, []byte(id), aead, t.UTC().Unix()/86400, 0
	return nil
}

// Opener decrypts sealed records with an officer's private key.
type Opener struct {
	keyring openpgp.EntityList
	wrapped map[string][]byte
	mu      sync.Mutex
	aeads   map[string]cipher.AEAD
}

// NewOpener opens records of the given epochs with keyring (the officer's
// private key, unencrypted).
func NewOpener(keyring openpgp.EntityList, epochs []storage.EpochKey) *Opener {
	o := &Opener{keyring: keyring, wrapped: map[string][]byte{}, aeads: map[string]cipher.AEAD{}}
	for _, e := range epochs {
		o.wrapped[e.ID] = e.Wrapped
	}
	return o
}

// ReadDecryptKey reads an officer's private key file (armored or binary,
// without a passphrase).
func ReadDecryptKey(file string) (openpgp.EntityList, error) {
	keys, err := ReadOpenPGPKeys([]string{file})
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.PrivateKey == nil {
			return nil, fmt.Errorf("archive: %s holds no private key", file)
		}
		if k.PrivateKey.Encrypted {
			return nil, fmt.Errorf("archive: the private key in %s is protected by a passphrase; export it without one for the export", file)
		}
	}
	return keys, nil
}

// Open returns the plaintext of a decoded record, checked against its
// commitment; plaintext records are returned as they are.
func (o *Opener) Open(r Record) ([]byte, error) {
	if r.Enc == EncNone {
		return []byte(r.Content), nil
	}
	id, ok := strings.CutPrefix(r.Enc, EncAESGCMPrefix)
	if !ok {
		return nil, fmt.Errorf("archive: content encoding %q unknown", r.Enc)
	}
	aead, err := o.aead(id)
	if err != nil {
		return nil, err
	}
	sealed, err := base64.StdEncoding.DecodeString(r.Content)
	if err != nil || len(sealed) < 12 {
		return nil, errors.New("archive: sealed content is not base64 of nonce and ciphertext")
	}
	plain, err := aead.Open(nil, sealed[:12], sealed[12:], []byte(id))
	if err != nil {
		return nil, fmt.Errorf("archive: content does not decrypt under epoch key %s: %w", id, err)
	}
	c := Commitment(r.Salt, plain)
	if subtle.ConstantTimeCompare(c[:], r.Commit) != 1 {
		return nil, errors.New("archive: decrypted content does not match its commitment")
	}
	return plain, nil
}

func (o *Opener) aead(id string) (cipher.AEAD, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if a, ok := o.aeads[id]; ok {
		return a, nil
	}
	w, ok := o.wrapped[id]
	if !ok {
		return nil, fmt.Errorf("archive: epoch key %s is not in the journal", id)
	}
	md, err := openpgp.ReadMessage(bytes.NewReader(w), o.keyring, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("archive: epoch key %s: not wrapped to this key: %w", id, err)
	}
	key, err := io.ReadAll(io.LimitReader(md.UnverifiedBody, 64))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("archive: epoch key %s does not unwrap to an AES-256 key", id)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	o.aeads[id] = a
	return a, nil
}

// EncryptFile encrypts the file in to out for the recipients' OpenPGP
// keys (binary OpenPGP message, as `gpg --decrypt` reads), mode 0600.
func EncryptFile(in, out string, recipients openpgp.EntityList) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	w, err := openpgp.Encrypt(dst, recipients, nil, &openpgp.FileHints{IsBinary: true}, nil)
	if err == nil {
		_, err = io.Copy(w, src)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		return fmt.Errorf("archive: encrypt %s: %w", out, err)
	}
	return nil
}
