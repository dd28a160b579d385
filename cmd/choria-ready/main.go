// Command choria-ready tells whether services are serving: it exits 0 when
// every HOST:PORT given accepts a TCP connection, 1 when one does not and
// 2 on a usage error. The OCI images run it as their compose healthcheck,
// dialling the address the namespace lab waits on for the same host, so
// `docker compose up --wait` returns when the lab would call a role ready.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// timeout bounds each connection attempt, under the healthcheck's own.
const timeout = 2 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: choria-ready HOST:PORT...")
		return 2
	}
	for _, a := range args {
		if _, _, err := net.SplitHostPort(a); err != nil {
			fmt.Fprintf(stderr, "choria-ready: %q is not HOST:PORT: %v\n", a, err)
			return 2
		}
	}
	for _, a := range args {
		c, err := net.DialTimeout("tcp", a, timeout)
		if err != nil {
			fmt.Fprintf(stderr, "choria-ready: %s: %v\n", a, err)
			return 1
		}
		c.Close()
	}
	return 0
}
