// Command palisade is a standards-based XMPP server for companies that must
// keep and prove their records.
package main

import (
	"os"

	_ "github.com/palisade-im/palisade/modules/all" // every compiled-in module
	"github.com/palisade-im/palisade/server/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
