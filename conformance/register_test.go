package conformance

import (
	"fmt"
	"testing"
	"time"
)

// TestSlixmppRegister: slixmpp's XEP-0077 client (plugin xep_0077)
// registers a new account in-band, as Gajim's account wizard does: a first
// submission with a weak password is refused with a reply that still holds
// the form's fields (the password one included, its value not echoed),
// then the "user" reads the form for longer than the default auth_timeout
// (30s) before submitting again, and logs in with the new account on the
// same stream. Before registration_timeout the stream was cut at 30s, and
// the refusal lost the <password/> field.
func TestSlixmppRegister(t *testing.T) {
	RequireSlixmpp(t)
	s := StartServerWith(t, "\n[modules.register]\nallow = true\n")
	const read = 32 * time.Second // past the default auth_timeout of 30s
	_, port := HostPort(s.C2S)
	out, err := s.RunPeer(t, read+60*time.Second, "slixmpp register", nil, PythonBin,
		"testdata/slix_register.py", "--port", port, "--ca", s.CAFile,
		"--timeout", fmt.Sprint(int(read.Seconds())+50), "--weak", "short",
		"--read-time", fmt.Sprint(read.Seconds()), "dave@"+Domain+":correct-horse-battery-9")
	if err != nil {
		t.Fatalf("slix_register.py: %v\n%s", err, out)
	}
	wantLine(t, out, `FORM (instructions,)?username,password`)
	wantLine(t, out, `REG ERROR not-acceptable FIELDS username,password PASSWORD empty`)
	wantLine(t, out, `REGISTERED dave@localhost`)
	wantLine(t, out, `LOGIN OK dave \S+ dave@localhost/\S+`)
}
