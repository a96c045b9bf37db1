package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/palisade-im/palisade/modules/archive/cosignature"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"mellium.im/xmpp/jid"
)

// Files of an export bundle.
const (
	FileRecords     = "records.jsonl"
	FileProofs      = "proofs.jsonl"
	FileConsistency = "consistency.jsonl"
	FileCheckpoint  = "checkpoint.txt"
	FileVerifierKey = "verifier.key"
	FileOpenPGPKey  = "signing-key.asc"
	FileReadme      = "README.txt"
	FileManifest    = "MANIFEST.sha256"
	FileSignature   = "MANIFEST.sha256.asc"
	dirConversation = "conversations"
)

// NSStanzaID is the XEP-0359 namespace.
const NSStanzaID = "urn:xmpp:sid:0"

// ExportOptions select the records of an export. Zero values select all.
type ExportOptions struct {
	// From and To bound the record time: From <= time < To.
	From, To time.Time
	// Users are bare JIDs; a record matches when its sender or recipient
	// is one of them.
	Users []string
	// With are conversation partners: a record matches when its other
	// party is one of them.
	With []string
	// Kinds are record kinds (RecordKinds lists them).
	Kinds []string
	// Open decrypts records stored with officer encryption (nil: they are
	// exported sealed, without body).
	Open *Opener `json:"-"`
	// EncryptedTo are the fingerprints of the keys the bundle is then
	// encrypted to, for the export's journal record.
	EncryptedTo []string `json:"-"`
	// Officer is the officer whose private key decrypts (OfficerFor): the
	// act's journal record is signed with it (officer.go). Nil for acts
	// without decryption, recorded under their actor (--by) alone.
	Officer *openpgp.Entity `json:"-"`
}

// ExportLine is one line of records.jsonl.
type ExportLine struct {
	Seq       int64  `json:"seq"`
	Time      string `json:"time"`
	Direction string `json:"direction"`
	Kind      string `json:"kind"`
	From      string `json:"from"`
	To        string `json:"to"`
	Type      string `json:"type"`
	ID        string `json:"id"`
	StanzaID  string `json:"stanza_id"`
	Thread    string `json:"thread"`
	Body      string `json:"body"`
	// Record is the stored record, byte for byte (base64 in JSON): its
	// RFC 6962 leaf hash is what the inclusion proof proves.
	Record []byte `json:"record"`
	// Purged marks a record whose content retention removed: Record is
	// empty, the metadata comes from the journal's index, and the proof
	// starts from the stored leaf hash. PurgedBy is the disposition
	// record's seq.
	Purged   bool  `json:"purged,omitempty"`
	PurgedBy int64 `json:"purged_by,omitempty"`
	// Encrypted marks a record stored with officer encryption. Plaintext
	// is then its decrypted content when the export was decrypted: SHA-256
	// of the record's salt and it must equal the record's commit.
	Encrypted bool   `json:"encrypted,omitempty"`
	Plaintext string `json:"plaintext,omitempty"`
}

// ProofLine is one line of proofs.jsonl: the inclusion proof of a record in
// the bundle's checkpoint.
type ProofLine struct {
	Seq   int64       `json:"seq"`
	Leaf  tlog.Hash   `json:"leaf"`
	Proof []tlog.Hash `json:"proof"`
}

// ConsistencyLine is one line of consistency.jsonl: a proof that the tree
// of an earlier checkpoint is a prefix of the bundle's checkpoint.
type ConsistencyLine struct {
	Size  int64       `json:"size"`
	Proof []tlog.Hash `json:"proof"`
}

// ExportSummary describes a written bundle.
type ExportSummary struct {
	Records       int
	Conversations int
	Checkpoint    storage.TreeHead
	// CheckpointTime is when the checkpoint was issued (the tar entries'
	// time).
	CheckpointTime time.Time
	// Unsigned counts records newer than the latest checkpoint, which an
	// export cannot prove and leaves out.
	Unsigned int64
	// Purged counts the exported records whose content retention removed.
	Purged int
	// Decrypted counts the records decrypted with an officer key.
	Decrypted int
}

func (o ExportOptions) match(r storage.JournalRecord) bool {
	if !o.From.IsZero() && r.Time.Before(o.From) || !o.To.IsZero() && !r.Time.Before(o.To) {
		return false
	}
	if len(o.Kinds) > 0 && !slices.Contains(o.Kinds, string(r.Kind)) {
		return false
	}
	from, to := bareOf(r.From), bareOf(r.To)
	if len(o.Users) > 0 && !slices.Contains(o.Users, from) && !slices.Contains(o.Users, to) {
		return false
	}
	if len(o.With) > 0 {
		ok := false
		for _, w := range o.With {
			other := ""
			switch {
			case from == w:
				other = to
			case to == w:
				other = from
			default:
				continue
			}
			if len(o.Users) == 0 || slices.Contains(o.Users, other) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func bareOf(s string) string {
	j, err := jid.Parse(s)
	if err != nil {
		return s
	}
	return j.Bare().String()
}

// Export writes a bundle for regulators into dir, which must not exist: it
// is built beside it and renamed into place when complete. A dir ending in
// ".tar" is written as a tar file holding one directory of that name
// without ".tar". The bundle is proven against the journal's latest
// checkpoint; records after it are left out (counted in Unsigned).
func Export(ctx context.Context, j storage.Journal, dir string, opt ExportOptions, vkey string, pgp *openpgp.Entity) (ExportSummary, error) {
	if _, err := os.Lstat(dir); err == nil {
		return ExportSummary{}, fmt.Errorf("archive: export: %s already exists", dir)
	}
	if !strings.HasSuffix(dir, ".tar") {
		return exportDir(ctx, j, dir, opt, vkey, pgp)
	}
	work, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(dir)+".partial-")
	if err != nil {
		return ExportSummary{}, fmt.Errorf("archive: export: %w", err)
	}
	defer os.RemoveAll(work)
	inner := filepath.Join(work, strings.TrimSuffix(filepath.Base(dir), ".tar"))
	sum, err := exportDir(ctx, j, inner, opt, vkey, pgp)
	if err != nil {
		return sum, err
	}
	if err := writeTar(dir, work, sum.CheckpointTime); err != nil {
		return sum, fmt.Errorf("archive: export: %w", err)
	}
	return sum, nil
}

func exportDir(ctx context.Context, j storage.Journal, dir string, opt ExportOptions, vkey string, pgp *openpgp.Entity) (ExportSummary, error) {
	var sum ExportSummary
	cps, err := j.Checkpoints(ctx)
	if err != nil {
		return sum, err
	}
	if len(cps) == 0 {
		return sum, errors.New("archive: export: the journal has no checkpoint yet (the server issues one every checkpoint_interval and on shutdown)")
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return sum, fmt.Errorf("archive: export: verifier key: %w", err)
	}
	cp := cps[len(cps)-1]
	head, err := ParseCheckpoint(cp.Note, v)
	if err != nil {
		return sum, fmt.Errorf("archive: export: latest checkpoint: %w", err)
	}
	sum.Checkpoint, sum.CheckpointTime = head, cp.Time
	if th, err := j.TreeHead(ctx); err == nil {
		sum.Unsigned = th.Size - head.Size
	}

	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(dir)+".partial-")
	if err != nil {
		return sum, fmt.Errorf("archive: export: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Mkdir(filepath.Join(tmp, dirConversation), 0o755); err != nil {
		return sum, fmt.Errorf("archive: export: %w", err)
	}
	stored := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return j.ReadHashes(ctx, idx) })

	var recs, proofs bytes.Buffer
	convs := map[string]*conversation{}
	err = j.Records(ctx, 0, head.Size, func(r storage.JournalRecord) error {
		if !opt.match(r) {
			return nil
		}
		if r.Purged {
			line := ExportLine{Seq: r.Seq, Time: r.Time.UTC().Format(time.RFC3339Nano), Direction: string(r.Direction),
				Kind: string(r.Kind), From: r.From, To: r.To, Type: r.StanzaType, Purged: true, PurgedBy: r.PurgedBy}
			leaf, err := j.ReadHashes(ctx, []int64{tlog.StoredHashIndex(0, r.Seq)})
			if err != nil {
				return fmt.Errorf("record %d: leaf hash: %w", r.Seq, err)
			}
			p, err := tlog.ProveRecord(head.Size, r.Seq, stored)
			if err != nil {
				return fmt.Errorf("record %d: inclusion proof: %w", r.Seq, err)
			}
			for _, v := range []any{line, ProofLine{Seq: r.Seq, Leaf: leaf[0], Proof: p}} {
				b, err := json.Marshal(v)
				if err != nil {
					return err
				}
				if _, ok := v.(ExportLine); ok {
					recs.Write(b)
					recs.WriteByte('\n')
				} else {
					proofs.Write(b)
					proofs.WriteByte('\n')
				}
			}
			sum.Records++
			sum.Purged++
			return nil
		}
		rec, err := DecodeRecord(r.Data)
		if err != nil {
			return fmt.Errorf("record %d: %w", r.Seq, err)
		}
		line := ExportLine{
			Seq: r.Seq, Time: rec.Time.UTC().Format(time.RFC3339Nano), Direction: rec.Dir, Kind: rec.Kind,
			From: rec.From, To: rec.To, Type: rec.Type, ID: rec.ID, Record: r.Data,
		}
		content := rec.Content
		if rec.Enc != EncNone {
			line.Encrypted, content = true, ""
			if opt.Open != nil {
				plain, err := opt.Open.Open(rec)
				if err != nil {
					return fmt.Errorf("record %d: %w", r.Seq, err)
				}
				content, line.Plaintext = string(plain), string(plain)
				sum.Decrypted++
			}
		}
		line.Body, line.Thread, line.StanzaID = contentFields(content)
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		recs.Write(b)
		recs.WriteByte('\n')
		p, err := tlog.ProveRecord(head.Size, r.Seq, stored)
		if err != nil {
			return fmt.Errorf("record %d: inclusion proof: %w", r.Seq, err)
		}
		b, err = json.Marshal(ProofLine{Seq: r.Seq, Leaf: tlog.RecordHash(r.Data), Proof: p})
		if err != nil {
			return err
		}
		proofs.Write(b)
		proofs.WriteByte('\n')
		if rec.Kind != string(storage.KindExport) && rec.Kind != string(storage.KindAdmin) {
			addToConversation(convs, line, content, rec.Time)
		}
		sum.Records++
		return nil
	})
	if err != nil {
		return sum, fmt.Errorf("archive: export: %w", err)
	}
	var cons bytes.Buffer
	seen := map[int64]bool{}
	for _, c := range cps {
		if c.Size <= 0 || c.Size >= head.Size || seen[c.Size] {
			continue
		}
		seen[c.Size] = true
		p, err := tlog.ProveTree(head.Size, c.Size, stored)
		if err != nil {
			return sum, fmt.Errorf("archive: export: consistency proof from size %d: %w", c.Size, err)
		}
		b, _ := json.Marshal(ConsistencyLine{Size: c.Size, Proof: p})
		cons.Write(b)
		cons.WriteByte('\n')
	}
	pub, err := ArmoredPublicKey(pgp)
	if err != nil {
		return sum, err
	}
	files := map[string][]byte{
		FileRecords:     recs.Bytes(),
		FileProofs:      proofs.Bytes(),
		FileConsistency: cons.Bytes(),
		FileCheckpoint:  cosignedNote(cp),
		FileVerifierKey: []byte(vkey + "\n"),
		FileOpenPGPKey:  pub,
		FileReadme:      []byte(readme(head, sum.Records, opt, pgp)),
	}
	for name, c := range convs {
		files[dirConversation+"/"+name] = c.eml()
	}
	sum.Conversations = len(convs)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var manifest bytes.Buffer
	for _, n := range names {
		if err := writeFileSync(filepath.Join(tmp, filepath.FromSlash(n)), files[n], 0o644, true); err != nil {
			return sum, fmt.Errorf("archive: export: %w", err)
		}
		h := sha256.Sum256(files[n])
		fmt.Fprintf(&manifest, "%s  %s\n", hex.EncodeToString(h[:]), n)
	}
	sig, err := signDetached(pgp, bytes.NewReader(manifest.Bytes()))
	if err != nil {
		return sum, err
	}
	if err := writeFileSync(filepath.Join(tmp, FileManifest), manifest.Bytes(), 0o644, true); err != nil {
		return sum, fmt.Errorf("archive: export: %w", err)
	}
	if err := writeFileSync(filepath.Join(tmp, FileSignature), sig, 0o644, true); err != nil {
		return sum, fmt.Errorf("archive: export: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return sum, fmt.Errorf("archive: export: %w", err)
	}
	ok = true
	return sum, syncDir(filepath.Dir(filepath.Clean(dir)))
}

// cosignedNote is the checkpoint's note with its cosignature lines
// appended: still one signed note, which the witnesses' keys verify.
func cosignedNote(cp storage.Checkpoint) []byte {
	out := slices.Clone(cp.Note)
	for _, c := range cp.Cosignatures {
		out = append(out, c.Line...)
	}
	return out
}

// ExportRecord is the content of the journal record of an export.
type ExportRecord struct {
	Out            string   `json:"out"`
	From           string   `json:"from,omitempty"`
	To             string   `json:"to,omitempty"`
	Users          []string `json:"users,omitempty"`
	With           []string `json:"with,omitempty"`
	Kinds          []string `json:"kinds,omitempty"`
	Records        int      `json:"records"`
	CheckpointSize int64    `json:"checkpoint_size"`
	// ManifestSHA256 is the SHA-256 of the bundle's MANIFEST.sha256: it
	// names exactly what was handed out.
	ManifestSHA256 string `json:"manifest_sha256"`
	// Decrypted counts records decrypted with an officer key.
	Decrypted int `json:"decrypted,omitempty"`
	// EncryptedTo are the fingerprints the bundle was encrypted to.
	EncryptedTo []string `json:"encrypted_to,omitempty"`
	// Officer (the officer key's fingerprint) and SignedAt are set on
	// an act signed by the officer (officer.go); the content then ends
	// with the signature member officer_sig.
	Officer  string `json:"officer,omitempty"`
	SignedAt string `json:"signed_at,omitempty"`
}

// RecordExport appends the chain-of-custody record of an export to the
// journal: who (actor) exported what, when. It is durable when it returns.
func RecordExport(ctx context.Context, j storage.Journal, actor string, opt ExportOptions, out string, sum ExportSummary, manifestSHA256 string) error {
	desc := ExportRecord{Out: out, Users: opt.Users, With: opt.With, Kinds: opt.Kinds, Records: sum.Records,
		CheckpointSize: sum.Checkpoint.Size, ManifestSHA256: manifestSHA256, Decrypted: sum.Decrypted, EncryptedTo: opt.EncryptedTo}
	if !opt.From.IsZero() {
		desc.From = opt.From.UTC().Format(time.RFC3339)
	}
	if !opt.To.IsZero() {
		desc.To = opt.To.UTC().Format(time.RFC3339)
	}
	now := time.Now()
	if opt.Officer != nil {
		desc.Officer, desc.SignedAt = Fingerprint(opt.Officer), now.UTC().Format(time.RFC3339Nano)
	}
	content, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	if opt.Officer != nil {
		if content, err = signAct(storage.KindExport, content, opt.Officer); err != nil {
			return err
		}
	}
	data, err := appendRecord(nil, now, string(storage.DirLocal), string(storage.KindExport), actor, "", "", "", content)
	if err != nil {
		return err
	}
	return j.Append(ctx, []storage.JournalRecord{{Time: now, Direction: storage.DirLocal, Kind: storage.KindExport,
		From: actor, StanzaSize: len(content), Data: data}})
}

// ManifestDigest returns the SHA-256 (hex) of a bundle's manifest; bundle
// is a directory or a .tar file.
func ManifestDigest(bundle string) (string, error) {
	dir := bundle
	if fi, err := os.Stat(bundle); err == nil && fi.Mode().IsRegular() {
		tmp, err := os.MkdirTemp("", "palisade-export-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		if dir, err = extractTar(bundle, tmp); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, FileManifest))
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// contentFields extracts body, thread and XEP-0359 stanza-id from a
// record's stanza XML.
func contentFields(content string) (body, thread, stanzaID string) {
	el, err := element.Parse([]byte(content), stanza.NSClient)
	if err != nil {
		return "", "", ""
	}
	if sid := el.Child(NSStanzaID, "stanza-id"); sid != nil {
		stanzaID = sid.Attr("id")
	}
	return el.ChildText(stanza.NSClient, "body"), el.ChildText(stanza.NSClient, "thread"), stanzaID
}

type conversation struct {
	a, b  string
	day   string
	first time.Time
	seqs  []int64
	lines []string
}

func addToConversation(convs map[string]*conversation, l ExportLine, content string, t time.Time) {
	a, b := bareOf(l.From), bareOf(l.To)
	if b == "" {
		b = a // a presence broadcast: the sender's own page
	}
	if b < a {
		a, b = b, a
	}
	day := t.UTC().Format("2006-01-02")
	name := day + "_" + fileSafe(a) + "_" + fileSafe(b) + ".eml"
	c := convs[name]
	if c == nil {
		c = &conversation{a: a, b: b, day: day, first: t}
		convs[name] = c
	}
	c.seqs = append(c.seqs, l.Seq)
	what := l.Body
	switch {
	case l.Kind == string(storage.KindSubscription):
		what = "(presence " + l.Type + ")"
	case l.Encrypted && l.Plaintext == "":
		what = "(encrypted to the officer keys: export with --decrypt-key)"
	case l.Kind != string(storage.KindMessage):
		what = describe(l.Kind, content)
	case l.Type == "error":
		what = "(error) " + l.Body
	case what == "":
		what = "(no body)"
	}
	to := l.To
	if to == "" {
		to = "(broadcast)"
	}
	c.lines = append(c.lines, fmt.Sprintf("[%s UTC] #%d %s -> %s: %s", t.UTC().Format("15:04:05"), l.Seq, l.From, to, what))
}

// describe is the conversation line of a record of another channel than
// messages: its kind and type, the payload's name and namespace, and the
// presence status text (the record itself is in records.jsonl).
func describe(kind, content string) string {
	el, err := element.Parse([]byte(content), stanza.NSClient)
	if err != nil {
		return "(" + kind + ")"
	}
	what := "(" + kind
	if t := el.Attr("type"); t != "" {
		what += " " + t
	}
	if p := el.FirstElement(); p != nil && el.Local == "iq" {
		what += " <" + p.Local + " xmlns='" + p.Space + "'>"
	}
	what += ")"
	if s := el.ChildText(stanza.NSClient, "status"); s != "" {
		what += " " + s
	}
	return what
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@.-", r) {
			return r
		}
		return '_'
	}, s)
}

// eml renders the conversation as an RFC 5322 message (UTF-8 headers per
// RFC 6532 where JIDs need them; CRLF line ends; lines kept under 998
// octets).
func (c *conversation) eml() []byte {
	var b strings.Builder
	h := sha256.Sum256([]byte(c.day + "\x00" + c.a + "\x00" + c.b))
	seqs := make([]string, len(c.seqs))
	for i, s := range c.seqs {
		seqs[i] = fmt.Sprint(s)
	}
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", c.a)
	hdr("To", c.b)
	hdr("Date", c.first.UTC().Format(time.RFC1123Z))
	hdr("Subject", "XMPP conversation between "+c.a+" and "+c.b+" on "+c.day)
	hdr("Message-ID", "<"+hex.EncodeToString(h[:12])+"."+c.day+"@palisade-export.invalid>")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	hdr("X-Palisade-Records", foldList(seqs))
	b.WriteString("\r\n")
	for _, l := range c.lines {
		for i, part := range strings.Split(strings.ReplaceAll(l, "\r\n", "\n"), "\n") {
			if i > 0 {
				part = "    " + part
			}
			for len(part) > 900 {
				cut := 900
				for cut > 0 && part[cut]&0xC0 == 0x80 {
					cut--
				}
				b.WriteString(part[:cut] + "\r\n")
				part = "    " + part[cut:]
			}
			b.WriteString(part + "\r\n")
		}
	}
	return []byte(b.String())
}

// foldList joins items with commas, folding header lines near 76 octets.
func foldList(items []string) string {
	var b strings.Builder
	n := 0
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
			n++
			if n+len(it) > 70 {
				b.WriteString("\r\n ")
				n = 1
			}
		}
		b.WriteString(it)
		n += len(it)
	}
	return b.String()
}

func readme(head storage.TreeHead, n int, opt ExportOptions, pgp *openpgp.Entity) string {
	var sel []string
	if !opt.From.IsZero() {
		sel = append(sel, "from "+opt.From.UTC().Format(time.RFC3339))
	}
	if !opt.To.IsZero() {
		sel = append(sel, "until "+opt.To.UTC().Format(time.RFC3339))
	}
	if len(opt.Users) > 0 {
		sel = append(sel, "users "+strings.Join(opt.Users, ", "))
	}
	if len(opt.With) > 0 {
		sel = append(sel, "partners "+strings.Join(opt.With, ", "))
	}
	if len(opt.Kinds) > 0 {
		sel = append(sel, "kinds "+strings.Join(opt.Kinds, ", "))
	}
	if len(sel) == 0 {
		sel = []string{"all records"}
	}
	return fmt.Sprintf(`Palisade compliance archive export
==================================

Selection: %s
Records:   %d, proven against the signed checkpoint of the journal at
           tree size %d (root %s).

Contents
  conversations/*.eml  one RFC 5322 message per conversation and day
                       (UTC), readable with any mail program
  records.jsonl        one JSON object per record; "record" is the stored
                       record, byte for byte (base64); a record with
                       "purged": true had its content removed by a
                       retention purge (the disposition record "purged_by"
                       says so): only its metadata and its leaf hash (in
                       proofs.jsonl) remain, and the proof starts there
  proofs.jsonl         RFC 6962 inclusion proof of every record in the
                       checkpoint
  consistency.jsonl    RFC 6962 consistency proofs from every earlier
                       checkpoint of the journal to this one
  checkpoint.txt       the checkpoint: a C2SP tlog-checkpoint signed note,
                       followed by the cosignature lines of every C2SP
                       tlog-witness that cosigned it (c2sp.org/tlog-
                       cosignature): each witness checked that this tree
                       extends the last one it saw of the journal
  verifier.key         the checkpoint note verifier key
  signing-key.asc      the OpenPGP key that signed MANIFEST.sha256
                       (fingerprint %X)
  MANIFEST.sha256      SHA-256 of every other file
  MANIFEST.sha256.asc  OpenPGP detached signature of MANIFEST.sha256

Compare the OpenPGP fingerprint and the verifier key with the ones the
company gave you out of band: the copies in this bundle prove nothing by
themselves.

How to verify
  1. Every file is intact:
       sha256sum -c MANIFEST.sha256
  2. The manifest was signed by the archive's key:
       gpg --import signing-key.asc
       gpg --verify MANIFEST.sha256.asc MANIFEST.sha256
  3. Every record is in the signed journal, and the checkpoint extends one
     you already hold (--trusted-checkpoint is optional):
       palisade archive verify-export --verifier-key KEY \
         [--trusted-checkpoint FILE] [--witness-key VKEY]... THIS-DIRECTORY
     Each --witness-key (a witness's cosignature verifier key, obtained
     from the witness's operator) must have a valid cosignature in
     checkpoint.txt: then the journal did not show this tree to you and
     another history to the witness.

Each record holds a salted SHA-256 commitment ("commit") to its stanza
("content"): content + salt -> commit -> record -> leaf -> checkpoint.
`, strings.Join(sel, "; "), n, head.Size, head.Hash, pgp.PrimaryKey.Fingerprint)
}

// VerifyExportOptions are the trust anchors of VerifyExport.
type VerifyExportOptions struct {
	// VerifierKey is the note verifier key obtained out of band; empty
	// uses the bundle's own verifier.key (and says so).
	VerifierKey string
	// OpenPGPKey is the armored public key obtained out of band; empty
	// uses the bundle's signing-key.asc.
	OpenPGPKey []byte
	// Trusted is a checkpoint obtained out of band; the bundle's
	// checkpoint must be consistent with it.
	Trusted []byte
	// WitnessKeys are cosignature verifier keys (vkeys) of witnesses
	// obtained out of band: each must have cosigned the checkpoint.
	WitnessKeys []string
	// OfficerKeys are the officer public keys (archive.officer_keys): the
	// officer signature of each export or search act in the bundle must
	// verify with one of them. Without them, signed acts are counted and
	// reported as not checked.
	OfficerKeys openpgp.EntityList
}

// VerifyExport checks a bundle: the manifest covers every file and every
// hash matches, its OpenPGP signature, the checkpoint's signature, each
// record's commitment, fields and inclusion proof, and optionally the
// consistency of the checkpoint with a trusted one. It returns what it
// checked, or the first problem.
//
// dir may be a bundle directory or a .tar file holding one.
func VerifyExport(dir string, opt VerifyExportOptions) (string, error) {
	if fi, err := os.Stat(dir); err == nil && fi.Mode().IsRegular() {
		tmp, err := os.MkdirTemp("", "palisade-verify-export-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		inner, err := extractTar(dir, tmp)
		if err != nil {
			return "", fmt.Errorf("%s: %w", dir, err)
		}
		dir = inner
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, filepath.FromSlash(name))) }
	manifest, err := read(FileManifest)
	if err != nil {
		return "", err
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(manifest))
	for ln := 1; sc.Scan(); ln++ {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			return "", fmt.Errorf("%s:%d: not a sha256sum line", FileManifest, ln)
		}
		data, err := read(name)
		if err != nil {
			return "", fmt.Errorf("%s:%d: %w", FileManifest, ln, err)
		}
		h := sha256.Sum256(data)
		if hex.EncodeToString(h[:]) != sum {
			return "", fmt.Errorf("%s: SHA-256 differs from %s", name, FileManifest)
		}
		listed[name] = true
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel != FileManifest && rel != FileSignature && !listed[rel] {
			return fmt.Errorf("%s is not listed in %s", rel, FileManifest)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	notes := []string{fmt.Sprintf("%d files match %s", len(listed), FileManifest)}

	pub, pubSrc := opt.OpenPGPKey, "given key"
	if pub == nil {
		if pub, err = read(FileOpenPGPKey); err != nil {
			return "", err
		}
		pubSrc = "the bundle's own " + FileOpenPGPKey + ": compare its fingerprint with one obtained out of band"
	}
	sig, err := read(FileSignature)
	if err != nil {
		return "", err
	}
	fpr, err := checkDetached(pub, manifest, sig)
	if err != nil {
		return "", fmt.Errorf("%s: %w", FileSignature, err)
	}
	notes = append(notes, fmt.Sprintf("manifest signed by OpenPGP key %s (%s)", fpr, pubSrc))

	vkey, vSrc := opt.VerifierKey, "given key"
	if vkey == "" {
		b, err := read(FileVerifierKey)
		if err != nil {
			return "", err
		}
		vkey, vSrc = strings.TrimSpace(string(b)), "the bundle's own "+FileVerifierKey+": compare it with the key obtained out of band"
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return "", fmt.Errorf("verifier key: %w", err)
	}
	cpb, err := read(FileCheckpoint)
	if err != nil {
		return "", err
	}
	head, err := ParseCheckpoint(cpb, v)
	if err != nil {
		return "", fmt.Errorf("%s: %w", FileCheckpoint, err)
	}
	notes = append(notes, fmt.Sprintf("checkpoint: tree size %d, root %s, signed by %s (%s)", head.Size, head.Hash, v.Name(), vSrc))
	for _, k := range opt.WitnessKeys {
		wv, err := cosignature.NewVerifier(k)
		if err != nil {
			return "", fmt.Errorf("witness key %q: %w", k, err)
		}
		_, sigs, err := cosignature.Open(cpb, wv)
		if err != nil {
			return "", fmt.Errorf("%s: witness %s: %w", FileCheckpoint, wv.Name(), err)
		}
		at, _ := cosignature.Timestamp(sigs[0])
		notes = append(notes, fmt.Sprintf("checkpoint cosigned by witness %s at %s", wv.Name(), at.Format(time.RFC3339)))
	}
	if len(opt.WitnessKeys) == 0 {
		if n, err := note.Open(cpb, note.VerifierList(v)); err == nil && len(n.UnverifiedSigs) > 0 {
			notes = append(notes, fmt.Sprintf("checkpoint carries %d other signatures (witness cosignatures?), not checked: give --witness-key", len(n.UnverifiedSigs)))
		}
	}

	proofs := map[int64]ProofLine{}
	pb, err := read(FileProofs)
	if err != nil {
		return "", err
	}
	for i, l := range bytes.Split(bytes.TrimSpace(pb), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var p ProofLine
		if err := json.Unmarshal(l, &p); err != nil {
			return "", fmt.Errorf("%s:%d: %w", FileProofs, i+1, err)
		}
		proofs[p.Seq] = p
	}
	rb, err := read(FileRecords)
	if err != nil {
		return "", err
	}
	n, purged, decrypted := 0, 0, 0
	actsSigned, actsUnchecked := 0, 0
	for i, l := range bytes.Split(bytes.TrimSpace(rb), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		where := fmt.Sprintf("%s:%d", FileRecords, i+1)
		var e ExportLine
		if err := json.Unmarshal(l, &e); err != nil {
			return "", fmt.Errorf("%s: %w", where, err)
		}
		if e.Purged {
			p, ok := proofs[e.Seq]
			if !ok {
				return "", fmt.Errorf("%s (record %d): no inclusion proof", where, e.Seq)
			}
			if len(e.Record) != 0 || e.Body != "" {
				return "", fmt.Errorf("%s (record %d): marked purged but carries content", where, e.Seq)
			}
			if err := tlog.CheckRecord(p.Proof, head.Size, head.Hash, e.Seq, p.Leaf); err != nil {
				return "", fmt.Errorf("%s (record %d, purged): its leaf hash is not in the checkpoint's tree: %w", where, e.Seq, err)
			}
			n++
			purged++
			continue
		}
		rec, err := DecodeRecord(e.Record)
		if err != nil {
			return "", fmt.Errorf("%s (record %d): %w", where, e.Seq, err)
		}
		content := rec.Content
		switch {
		case rec.Enc == EncNone && (e.Plaintext != "" || e.Encrypted):
			return "", fmt.Errorf("%s (record %d): a plaintext record marked encrypted", where, e.Seq)
		case rec.Enc != EncNone && !e.Encrypted:
			return "", fmt.Errorf("%s (record %d): an encrypted record not marked so", where, e.Seq)
		case rec.Enc != EncNone:
			content = ""
			if e.Plaintext != "" {
				c := Commitment(rec.Salt, []byte(e.Plaintext))
				if subtle.ConstantTimeCompare(c[:], rec.Commit) != 1 {
					return "", fmt.Errorf("%s (record %d): the decrypted content does not match the record's commitment", where, e.Seq)
				}
				content = e.Plaintext
				decrypted++
			}
		}
		body, thread, sid := contentFields(content)
		if e.Time != rec.Time.UTC().Format(time.RFC3339Nano) || e.Direction != rec.Dir || e.Kind != rec.Kind || e.From != rec.From ||
			e.To != rec.To || e.Type != rec.Type || e.ID != rec.ID || e.Body != body || e.Thread != thread || e.StanzaID != sid {
			return "", fmt.Errorf("%s (record %d): the fields differ from the stored record", where, e.Seq)
		}
		p, ok := proofs[e.Seq]
		if !ok {
			return "", fmt.Errorf("%s (record %d): no inclusion proof", where, e.Seq)
		}
		leaf := tlog.RecordHash(e.Record)
		if p.Leaf != leaf {
			return "", fmt.Errorf("%s (record %d): leaf hash differs from the proof's", where, e.Seq)
		}
		if err := tlog.CheckRecord(p.Proof, head.Size, head.Hash, e.Seq, leaf); err != nil {
			return "", fmt.Errorf("%s (record %d): not in the checkpoint's tree: %w", where, e.Seq, err)
		}
		if k := storage.RecordKind(rec.Kind); (k == storage.KindExport || k == storage.KindSearch) && rec.Enc == EncNone {
			keys := opt.OfficerKeys
			act, err := CheckAct(k, []byte(rec.Content), keys)
			switch {
			case err != nil && (keys != nil || !errors.Is(err, ErrUnknownOfficer)):
				return "", fmt.Errorf("%s (record %d): %w", where, e.Seq, err)
			case act.Signed && keys == nil:
				actsUnchecked++
			case act.Signed:
				actsSigned++
			}
		}
		n++
	}
	notes = append(notes, fmt.Sprintf("%d records: commitments, fields and inclusion proofs check", n))
	if decrypted > 0 {
		notes = append(notes, fmt.Sprintf("%d of them decrypted: plaintext -> commitment -> leaf -> checkpoint checks", decrypted))
	}
	if purged > 0 {
		notes = append(notes, fmt.Sprintf("%d of them purged by retention (content removed; leaf hashes proven in the tree)", purged))
	}
	if actsSigned > 0 {
		notes = append(notes, fmt.Sprintf("%d officer acts: signatures check with the officer keys given", actsSigned))
	}
	if actsUnchecked > 0 {
		notes = append(notes, fmt.Sprintf("%d officer-signed acts not checked: give --officer-key (or --config with archive.officer_keys)", actsUnchecked))
	}

	if opt.Trusted != nil {
		th, err := ParseCheckpoint(opt.Trusted, v)
		if err != nil {
			return "", fmt.Errorf("trusted checkpoint: %w", err)
		}
		switch {
		case th.Size == head.Size:
			if th.Hash != head.Hash {
				return "", fmt.Errorf("trusted checkpoint (size %d) and the bundle's sign different trees", th.Size)
			}
		case th.Size > head.Size:
			return "", fmt.Errorf("trusted checkpoint (size %d) is newer than the bundle's (size %d): ask for a newer export", th.Size, head.Size)
		case th.Size == 0:
		default:
			cb, err := read(FileConsistency)
			if err != nil {
				return "", err
			}
			var proof *ConsistencyLine
			for _, l := range bytes.Split(bytes.TrimSpace(cb), []byte("\n")) {
				var c ConsistencyLine
				if len(l) > 0 && json.Unmarshal(l, &c) == nil && c.Size == th.Size {
					proof = &c
				}
			}
			if proof == nil {
				return "", fmt.Errorf("no consistency proof from tree size %d in %s", th.Size, FileConsistency)
			}
			if err := tlog.CheckTree(proof.Proof, head.Size, head.Hash, th.Size, th.Hash); err != nil {
				return "", fmt.Errorf("the bundle's checkpoint is not consistent with the trusted one (size %d): %w", th.Size, err)
			}
		}
		notes = append(notes, fmt.Sprintf("checkpoint is consistent with the trusted checkpoint of size %d", th.Size))
	}
	return strings.Join(notes, "\n"), nil
}
