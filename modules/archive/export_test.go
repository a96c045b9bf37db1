package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

func exportFixture(t *testing.T) (*fixture, string, []byte) {
	t.Helper()
	f := newFixture(t)
	ctx := context.Background()
	day1 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	clock := day1
	f.m.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
	send := func(from, to, body string) {
		st := msg(t, from, to, "chat", body)
		st.El.Append(element.New(stanza.NSClient, "thread").SetText("t1"))
		if err := f.m.Append(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	send("alice@example.com/a", "bob@example.com", "hello bob")
	send("bob@example.com/b", "alice@example.com/a", "hi alice\nsecond line")
	send("alice@example.com/a", "carol@example.com", "hello carol")
	if err := f.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	cps, _ := f.j.Checkpoints(ctx)
	early := cps[0].Note
	clock = day1.Add(24 * time.Hour)
	send("alice@example.com/a", "bob@example.com", "next day")
	if err := f.m.Append(ctx, stanza.New(stanza.Presence, jid.MustParse("carol@example.com"), jid.MustParse("bob@example.com"), "subscribe", "")); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	send("alice@example.com/a", "bob@example.com", "not yet signed")
	return f, filepath.Join(t.TempDir(), "bundle"), early
}

func TestExportAndVerify(t *testing.T) {
	f, out, early := exportFixture(t)
	ctx := context.Background()
	pgp, err := LoadOrCreateOpenPGP(filepath.Join(t.TempDir(), "pgp.key"), "example.com/palisade-journal")
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := ReadVerifierKey(f.keyFile)
	sum, err := Export(ctx, f.j, out, ExportOptions{}, vkey, pgp)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != 5 || sum.Unsigned != 1 || sum.Checkpoint.Size != 5 || sum.Conversations != 4 {
		t.Fatalf("summary %+v", sum)
	}
	if _, err := Export(ctx, f.j, out, ExportOptions{}, vkey, pgp); err == nil {
		t.Fatal("export over an existing bundle succeeded")
	}
	eml, err := os.ReadFile(filepath.Join(out, "conversations", "2026-11-30_alice@example.com_bob@example.com.eml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"From: alice@example.com\r\n", "To: bob@example.com\r\n", "Date: Mon, 30 Nov 2026 10:01:00 +0000\r\n",
		"Subject: XMPP conversation between alice@example.com and bob@example.com on 2026-11-30\r\n", "Message-ID: <",
		"\r\n\r\n[10:01:00 UTC] #0 alice@example.com/a -> bob@example.com: hello bob\r\n",
		"[10:02:00 UTC] #1 bob@example.com/b -> alice@example.com/a: hi alice\r\n    second line\r\n"} {
		if !strings.Contains(string(eml), want) {
			t.Errorf(".eml lacks %q:\n%s", want, eml)
		}
	}
	lines := strings.Split(strings.TrimSpace(readFile(t, out, FileRecords)), "\n")
	var first ExportLine
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first.Body != "hello bob" || first.Thread != "t1" || first.From != "alice@example.com/a" || first.Kind != "message" || first.Seq != 0 {
		t.Fatalf("first line %+v", first)
	}
	report, err := VerifyExport(out, VerifyExportOptions{VerifierKey: vkey, Trusted: early})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(report, "5 records") || !strings.Contains(report, "consistent with the trusted checkpoint of size 3") {
		t.Fatalf("report:\n%s", report)
	}

	// A trusted checkpoint of another history (same key, a forged journal
	// signed again) is not consistent with the bundle's.
	g := newFixture(t)
	g.m.signer = f.m.signer
	for i := range 3 {
		if err := g.m.Append(ctx, msg(t, "alice@example.com/a", "bob@example.com", "chat", fmt.Sprintf("other %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	forged, _ := g.j.Checkpoints(ctx)
	if _, err := VerifyExport(out, VerifyExportOptions{VerifierKey: vkey, Trusted: forged[0].Note}); err == nil || !strings.Contains(err.Error(), "not consistent") {
		t.Fatalf("inconsistent trusted checkpoint: %v", err)
	}
	if _, err := VerifyExport(out, VerifyExportOptions{VerifierKey: g.verifierKey(t), Trusted: early}); err == nil || !strings.Contains(err.Error(), "checkpoint") {
		t.Fatalf("another verifier key: %v", err)
	}

	// A changed file fails the manifest.
	bad := copyBundle(t, out)
	writeFile(t, bad, FileRecords, strings.Replace(readFile(t, bad, FileRecords), `"body":"hello bob"`, `"body":"hello rob"`, 1))
	if _, err := VerifyExport(bad, VerifyExportOptions{VerifierKey: vkey}); err == nil || !strings.Contains(err.Error(), "SHA-256 differs") {
		t.Fatalf("changed records.jsonl: %v", err)
	}
	// ... and with the manifest recomputed, the signature.
	remanifest(t, bad)
	if _, err := VerifyExport(bad, VerifyExportOptions{VerifierKey: vkey}); err == nil || !strings.Contains(err.Error(), "OpenPGP signature") {
		t.Fatalf("changed manifest: %v", err)
	}
	// ... and re-signed by another key, given the real one.
	other, _ := LoadOrCreateOpenPGP(filepath.Join(t.TempDir(), "other.key"), "mallory")
	sig, _ := signDetached(other, strings.NewReader(readFile(t, bad, FileManifest)))
	writeFile(t, bad, FileSignature, string(sig))
	realPub, _ := ArmoredPublicKey(pgp)
	if _, err := VerifyExport(bad, VerifyExportOptions{VerifierKey: vkey, OpenPGPKey: realPub}); err == nil || !strings.Contains(err.Error(), "OpenPGP signature") {
		t.Fatalf("re-signed by another key: %v", err)
	}
	// Signed correctly but the record changed: its fields no longer match.
	sig, _ = signDetached(pgp, strings.NewReader(readFile(t, bad, FileManifest)))
	writeFile(t, bad, FileSignature, string(sig))
	if _, err := VerifyExport(bad, VerifyExportOptions{VerifierKey: vkey}); err == nil || !strings.Contains(err.Error(), "record 0") {
		t.Fatalf("changed body, re-signed: %v", err)
	}
	// An extra file is refused.
	extra := copyBundle(t, out)
	writeFile(t, extra, "conversations/extra.eml", "x")
	if _, err := VerifyExport(extra, VerifyExportOptions{VerifierKey: vkey}); err == nil || !strings.Contains(err.Error(), "not listed") {
		t.Fatalf("extra file: %v", err)
	}
}

func TestExportFilters(t *testing.T) {
	f, out, _ := exportFixture(t)
	pgp, _ := LoadOrCreateOpenPGP(filepath.Join(t.TempDir(), "pgp.key"), "x")
	vkey, _ := ReadVerifierKey(f.keyFile)
	for i, c := range []struct {
		opt  ExportOptions
		want []int64
	}{
		{ExportOptions{With: []string{"carol@example.com"}}, []int64{2, 4}},
		{ExportOptions{Users: []string{"alice@example.com"}, With: []string{"bob@example.com"}}, []int64{0, 1, 3}},
		{ExportOptions{From: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}, []int64{3, 4}},
		{ExportOptions{To: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Kinds: []string{"message"}}, []int64{0, 1, 2}},
		{ExportOptions{Kinds: []string{"subscription"}}, []int64{4}},
	} {
		dir := fmt.Sprintf("%s-%d", out, i)
		if _, err := Export(context.Background(), f.j, dir, c.opt, vkey, pgp); err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, l := range strings.Split(strings.TrimSpace(readFile(t, dir, FileRecords)), "\n") {
			var e ExportLine
			if l != "" && json.Unmarshal([]byte(l), &e) == nil {
				got = append(got, e.Seq)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("filter %d (%+v): records %v, want %v", i, c.opt, got, c.want)
		}
		if _, err := VerifyExport(dir, VerifyExportOptions{VerifierKey: vkey}); err != nil {
			t.Errorf("filter %d: %v", i, err)
		}
	}
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyBundle(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// remanifest recomputes MANIFEST.sha256 as a forger would.
func remanifest(t *testing.T, dir string) {
	t.Helper()
	var out bytes.Buffer
	for _, l := range strings.Split(strings.TrimSpace(readFile(t, dir, FileManifest)), "\n") {
		_, name, _ := strings.Cut(l, "  ")
		h := sha256.Sum256([]byte(readFile(t, dir, name)))
		fmt.Fprintf(&out, "%s  %s\n", hex.EncodeToString(h[:]), name)
	}
	writeFile(t, dir, FileManifest, out.String())
}

func (f *fixture) verifierKey(t *testing.T) string {
	t.Helper()
	k, err := ReadVerifierKey(f.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestExportTar(t *testing.T) {
	f, out, _ := exportFixture(t)
	pgp, _ := LoadOrCreateOpenPGP(filepath.Join(t.TempDir(), "pgp.key"), "x")
	vkey := f.verifierKey(t)
	tarFile := out + ".tar"
	if _, err := Export(context.Background(), f.j, tarFile, ExportOptions{}, vkey, pgp); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*partial*")); len(left) != 0 {
		t.Fatalf("work directories left behind: %v", left)
	}
	report, err := VerifyExport(tarFile, VerifyExportOptions{VerifierKey: vkey})
	if err != nil || !strings.Contains(report, "5 records") {
		t.Fatalf("verify tar: %v\n%s", err, report)
	}
	dst := t.TempDir()
	inner, err := extractTar(tarFile, dst)
	if err != nil || filepath.Base(inner) != "bundle" {
		t.Fatalf("extract: %q, %v", inner, err)
	}
	// A tar with an entry outside its directory is refused.
	evil := filepath.Join(t.TempDir(), "evil.tar")
	ef, _ := os.Create(evil)
	tw := tar.NewWriter(ef)
	_ = tw.WriteHeader(&tar.Header{Name: "bundle/../../x", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	_, _ = tw.Write([]byte("x"))
	_ = tw.Close()
	_ = ef.Close()
	if _, err := VerifyExport(evil, VerifyExportOptions{VerifierKey: vkey}); err == nil || !strings.Contains(err.Error(), "clean relative name") {
		t.Fatalf("evil tar: %v", err)
	}
}

func TestRecordExport(t *testing.T) {
	f, out, _ := exportFixture(t)
	ctx := context.Background()
	pgp, _ := LoadOrCreateOpenPGP(filepath.Join(t.TempDir(), "pgp.key"), "x")
	opt := ExportOptions{Users: []string{"alice@example.com"}}
	sum, err := Export(ctx, f.j, out, opt, f.verifierKey(t), pgp)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := ManifestDigest(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := RecordExport(ctx, f.j, "cli:officer", opt, out, sum, digest); err != nil {
		t.Fatal(err)
	}
	recs := records(t, f.j)
	last := recs[len(recs)-1]
	r, err := DecodeRecord(last.Data)
	if err != nil || last.Kind != "export" || r.From != "cli:officer" {
		t.Fatalf("export record %+v / %+v, %v", last, r, err)
	}
	var desc ExportRecord
	if err := json.Unmarshal([]byte(r.Content), &desc); err != nil || desc.ManifestSHA256 != digest || desc.Records != sum.Records ||
		desc.Out != out || len(desc.Users) != 1 {
		t.Fatalf("export record content %s: %v", r.Content, err)
	}
	if err := f.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(ctx, f.j, f.verifier); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify with an export record: %+v, %v", rep, err)
	}
	// A later export lists the earlier one but makes no conversation of it.
	sum2, err := Export(ctx, f.j, out+"-2", ExportOptions{Kinds: []string{"export"}}, f.verifierKey(t), pgp)
	if err != nil || sum2.Records != 1 || sum2.Conversations != 0 {
		t.Fatalf("export of export records: %+v, %v", sum2, err)
	}
}
