// Package all links every compiled-in module into the binary. The policy
// chain's order is in server/chain.go.
package all

import (
	_ "github.com/palisade-im/palisade/modules/roster" // RFC 6121 roster, subscriptions, presence
)
