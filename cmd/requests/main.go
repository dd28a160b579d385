// Command requests is the Choria external agent binary for the requests
// agent. The server runs it once per request from its plugins directory, next
// to requests.json, so it only wires the agent into go-external.
package main

import (
	"fmt"
	"os"

	"github.com/choria-io/go-external/agent"

	"github.com/reproducible-choria/deployment/agents/requests"
)

func main() {
	ea := agent.NewAgent(requests.Name)

	err := requests.New(requests.Config{}).Register(ea)
	if err != nil {
		fmt.Fprintf(os.Stderr, "requests agent: %v\n", err)
		os.Exit(1)
	}

	ea.ProcessRequest()
}
