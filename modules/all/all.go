// Package all links every compiled-in module into the binary. The policy
// chain's order is in server/chain.go.
package all

import (
	_ "github.com/palisade-im/palisade/modules/adhoc"    // XEP-0050 ad-hoc commands, XEP-0133 end user session
	_ "github.com/palisade-im/palisade/modules/archive"  // compliance journal (server's module.Journal)
	_ "github.com/palisade-im/palisade/modules/blocking" // XEP-0191 blocking command
	_ "github.com/palisade-im/palisade/modules/carbons"  // XEP-0280 message carbons
	_ "github.com/palisade-im/palisade/modules/contacts" // contact policy (a policy link, server/chain.go)
	_ "github.com/palisade-im/palisade/modules/content"  // [[content.rule]] data loss prevention (a policy link)
	_ "github.com/palisade-im/palisade/modules/disco"    // XEP-0030 discovery, XEP-0115 caps
	_ "github.com/palisade-im/palisade/modules/extdisco" // XEP-0215 external services (STUN/TURN)
	// file_transfer rights on every transfer path (a policy link, server/chain.go)
	_ "github.com/palisade-im/palisade/modules/filetransfer"
	_ "github.com/palisade-im/palisade/modules/groups"   // groups of internal accounts (palisade user group)
	_ "github.com/palisade-im/palisade/modules/ldap"     // directory accounts (auth provider "ldap"), live revocation
	_ "github.com/palisade-im/palisade/modules/mam"      // XEP-0313 message history (server's module.MessageArchiver)
	_ "github.com/palisade-im/palisade/modules/offline"  // XEP-0160 offline messages
	_ "github.com/palisade-im/palisade/modules/pep"      // XEP-0163 personal eventing
	_ "github.com/palisade-im/palisade/modules/ping"     // XEP-0199 ping
	_ "github.com/palisade-im/palisade/modules/private"  // XEP-0049 private XML storage
	_ "github.com/palisade-im/palisade/modules/register" // XEP-0077 registration, password change
	_ "github.com/palisade-im/palisade/modules/roster"   // RFC 6121 roster, subscriptions, presence
	_ "github.com/palisade-im/palisade/modules/vcard"    // XEP-0054 vcard-temp
	_ "github.com/palisade-im/palisade/modules/version"  // XEP-0092 software version
	_ "github.com/palisade-im/palisade/modules/xtime"    // XEP-0202 entity time
)
