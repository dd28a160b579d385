// Command choria-provision-helper is the Choria Provisioner's helper: it
// reads one provisioning request as JSON on stdin and writes the reply as
// JSON on stdout.
//
// Exit status:
//   - 0: a reply was written. A bad request gets a reply with "defer": true
//     and a message, which the provisioner logs before retrying the node.
//   - 1: the --config file is missing or invalid, or stdout failed. This is
//     an operator error, not the node's: nothing is read or written, so the
//     provisioner defers the node by itself ("exit status 1"). The reason
//     goes to stderr, which the provisioner discards, so run the helper with
//     --check when deploying to see it.
//   - 2: bad command line.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/choria-io/fisk"

	"github.com/reproducible-choria/deployment/internal/provhelper"
)

// replyTimeout stays below the provisioner's 10 s helper timeout so a stuck
// stdin still ends in a reply that says why.
const replyTimeout = 8 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	defer func() {
		// Last resort: the provisioner still gets a reply it understands.
		if p := recover(); p != nil {
			fmt.Fprintln(stderr, "choria-provision-helper: internal error")
			if err := provhelper.WriteReply(stdout, provhelper.Deferred("internal error in the provisioning helper")); err != nil {
				code = 1
				return
			}
			code = 0
		}
	}()

	app := fisk.New("choria-provision-helper", "Choria Provisioner helper: provisioning request JSON on stdin, reply JSON on stdout")
	// stdout carries only the reply JSON.
	app.Writer(stderr)
	app.ErrorWriter(stderr)
	app.UsageWriter(stderr)
	configFile := app.Flag("config", "JSON file with the settings, permissions and token validity for every server").Required().PlaceHolder("FILE").String()
	check := app.Flag("check", "Only validate --config and exit").UnNegatableBool()

	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "choria-provision-helper: %v\n", err)
		return 2
	}

	cfg, err := provhelper.LoadConfig(*configFile)
	if err != nil {
		fmt.Fprintf(stderr, "choria-provision-helper: %v\n", err)
		return 1
	}
	h, err := provhelper.New(cfg, nil)
	if err != nil {
		fmt.Fprintf(stderr, "choria-provision-helper: config %s: %v\n", *configFile, err)
		return 1
	}
	if *check {
		fmt.Fprintf(stderr, "choria-provision-helper: config %s is valid\n", *configFile)
		return 0
	}

	ctx, cancel := context.WithTimeout(context.Background(), replyTimeout)
	defer cancel()
	if err := h.Serve(ctx, stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "choria-provision-helper: %v\n", err)
		return 1
	}
	return 0
}
