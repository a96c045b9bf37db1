package server

// policyOrder is the policy chain, in the order every stanza meets it.
// A module that implements module.Policy must be listed here; start-up
// fails otherwise, so the road a stanza takes is always readable here.
// Before these, the core applies the access rights (checkRights in
// access.go: send, federate, encryption), audited as policy
// "access".
var policyOrder = []string{
	"blocking", // XEP-0191: stanzas to and from blocked JIDs
	"contacts", // contacts and subscriptions rights: who may reach an account
	// [[content.rule]]: data loss prevention on what local accounts send
	"content",
	// file_transfer rights on SI, IBB, SOCKS5, Jingle and OOB transfers
	"filetransfer",
}
