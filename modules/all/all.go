// Package all links every compiled-in module into the binary. The policy
// chain's order is in server/chain.go.
package all
