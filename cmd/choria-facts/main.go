// Command choria-facts gathers system facts for the Choria server. The facts
// autonomous agent runs it as ./gather from its machine directory.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/choria-io/fisk"

	"github.com/reproducible-choria/deployment/internal/facts"
	"github.com/reproducible-choria/deployment/topology"
)

func main() {
	app := fisk.New("choria-facts", "Gathers system facts for the Choria server's facts file")
	output := app.Flag("output", "File to write the facts JSON to").Default(topology.MustDefault().ServerPaths.FactsFile).String()
	// failures are one line on stderr, which the exec watcher logs as the
	// reason: 2 for a usage error, 1 when gathering fails
	if _, err := app.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "choria-facts: %v\n", err)
		os.Exit(2)
	}
	os.Exit(gather(*output, os.Stdout, os.Stderr, facts.Gatherer{}))
}

// gather writes the facts to output and says so, or says why not.
func gather(output string, stdout, stderr io.Writer, g facts.Gatherer) int {
	if err := g.Gather(output); err != nil {
		fmt.Fprintf(stderr, "choria-facts: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote facts to %s\n", output)
	return 0
}
