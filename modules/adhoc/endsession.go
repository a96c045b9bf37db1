package adhoc

import (
	"context"
	"fmt"
	"strings"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

// NodeEndUserSession is the XEP-0133 "End User Session" command.
const NodeEndUserSession = NSAdmin + "#end-user-session"

// ReasonEndUserSession is the reason of its session_kicked audit events.
const ReasonEndUserSession = "ad-hoc end-user-session"

// maxAccounts bounds the JIDs one submission may name.
const maxAccounts = 100

// endUserSession is XEP-0133 section 4.12: every session of each account
// in accountjids ends as with `palisade user kick` (kick): a stream error,
// no resumption, a session_kicked audit event naming the administrator.
func endUserSession(r module.Router, kick func(j jid.JID, actor, reason string) int) Command {
	return Command{
		Node: NodeEndUserSession,
		Name: "End User Session",
		Form: func() *element.Element {
			return element.New(NSData, "x", element.A("type", "form")).Append(
				element.New(NSData, "title").SetText("Ending a User Session"),
				element.New(NSData, "instructions").SetText("Give the JIDs of the accounts whose sessions end now; they cannot be resumed."),
				field("hidden", "FORM_TYPE", "", false, NSAdmin),
				field("jid-multi", "accountjids", "The Jabber ID(s) for which to end sessions", true),
			)
		},
		Submit: func(_ context.Context, requester jid.JID, f Fields) ([]Note, error) {
			var targets []jid.JID
			var bad []string
			for _, v := range f["accountjids"] {
				v = strings.TrimSpace(v)
				if v == "" {
					continue
				}
				j, err := jid.Parse(v)
				switch {
				case err != nil || j.Localpart() == "":
					bad = append(bad, fmt.Sprintf("%q is not an account JID (user@domain)", v))
				case !r.IsLocal(j.Domainpart()):
					bad = append(bad, fmt.Sprintf("%s is not an account of this server (domain %s is not served here)", j, j.Domainpart()))
				default:
					dup := false
					for _, t := range targets {
						dup = dup || t.Equal(j)
					}
					if !dup {
						targets = append(targets, j)
					}
				}
			}
			if len(bad) > 0 {
				// Nothing is ended when any JID is wrong.
				return []Note{{Type: "error", Text: strings.Join(bad, "; ") + "; no session was ended"}}, nil
			}
			if len(targets) == 0 {
				return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-payload", "accountjids: at least one JID is required")
			}
			if len(targets) > maxAccounts {
				return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-payload", fmt.Sprintf("accountjids: at most %d JIDs at once", maxAccounts))
			}
			var out []string
			for _, j := range targets {
				switch n := kick(j, requester.Bare().String(), ReasonEndUserSession); n {
				case 0:
					out = append(out, j.String()+": no session")
				default:
					out = append(out, fmt.Sprintf("%s: %d session(s) ended", j, n))
				}
			}
			return []Note{{Type: "info", Text: strings.Join(out, "; ")}}, nil
		},
	}
}
