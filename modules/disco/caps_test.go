package disco

import (
	"testing"

	"github.com/palisade-im/palisade/server/element"
)

// xep0115Complex is XEP-0115 example 5.3 as a disco#info result.
const xep0115Complex = `<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>`

func TestParseInfoVerifies(t *testing.T) {
	q, err := element.Parse([]byte(xep0115Complex), "")
	if err != nil {
		t.Fatal(err)
	}
	info, err := ParseInfo(q)
	if err != nil {
		t.Fatal(err)
	}
	if !VerifyVer(info, "sha-1", "q07IKJEyjvHSyhy//CH0CxmKi8w=") {
		t.Errorf("example 5.3 does not verify: S = %q", VerString(info))
	}
	for _, c := range []struct{ hash, ver string }{
		{"sha-1", "QgayPKawpkPSDYmwT/WM94uAlu0="}, // example 5.2's ver
		{"md5", "q07IKJEyjvHSyhy//CH0CxmKi8w="},
	} {
		if VerifyVer(info, c.hash, c.ver) {
			t.Errorf("VerifyVer(%s, %s) = true", c.hash, c.ver)
		}
	}
}

func TestParseInfoRejectsAmbiguous(t *testing.T) {
	for name, x := range map[string]string{
		"duplicate feature":  `<query xmlns='http://jabber.org/protocol/disco#info'><feature var='a'/><feature var='a'/></query>`,
		"duplicate identity": `<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc'/><identity category='client' type='pc'/></query>`,
		"two FORM_TYPEs": `<query xmlns='http://jabber.org/protocol/disco#info'><x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>a</value></field></x>` +
			`<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>a</value></field></x></query>`,
		"FORM_TYPE not hidden": `<query xmlns='http://jabber.org/protocol/disco#info'><x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>a</value></field></x></query>`,
		"not disco#info":       `<query xmlns='jabber:iq:roster'/>`,
	} {
		q, err := element.Parse([]byte(x), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseInfo(q); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}
