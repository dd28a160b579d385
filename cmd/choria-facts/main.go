// Command choria-facts gathers system facts for the Choria server. The facts
// autonomous agent runs it as ./gather from its machine directory.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/choria-io/fisk"

	"github.com/reproducible-choria/deployment/internal/facts"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, facts.Gatherer{}))
}

// terminate carries fisk's exit request (after --help) out of the parser
// without exiting the process, so run stays testable.
type terminate int

// run is the command line: 0 when the facts are written, 1 when gathering
// fails, 2 for a usage error. Failures are one line on stderr, which the
// exec watcher logs as the reason.
func run(args []string, stdout, stderr io.Writer, g facts.Gatherer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			t, ok := r.(terminate)
			if !ok {
				panic(r)
			}
			code = int(t)
		}
	}()

	app := fisk.New("choria-facts", "Gathers system facts for the Choria server's facts file")
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	app.UsageWriter(stderr)
	app.Terminate(func(code int) { panic(terminate(code)) })
	output := app.Flag("output", "File to write the facts JSON to").Default(facts.DefaultOutput).String()

	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "choria-facts: %v\n", err)
		return 2
	}

	if err := g.Gather(*output); err != nil {
		fmt.Fprintf(stderr, "choria-facts: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote facts to %s\n", *output)
	return 0
}
