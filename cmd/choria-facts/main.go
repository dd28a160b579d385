// Command choria-facts gathers system facts for the Choria server. The facts
// autonomous agent runs it as ./gather from its machine directory.
package main

import (
	"os"

	"github.com/reproducible-choria/deployment/internal/facts"
)

func main() {
	os.Exit(facts.Main("choria-facts", os.Args[1:], os.Stdout, os.Stderr, facts.Gatherer{}))
}
