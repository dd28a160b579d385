// Command choria-plugins-server serves the plugins host's docroot: plugin
// archives and their checksums, read-only, directories listed, dot files
// hidden, every request logged. See internal/pluginhttp.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/choria-io/fisk"

	"github.com/reproducible-choria/deployment/internal/pluginhttp"
)

func main() {
	app := fisk.New("choria-plugins-server", "Serve Choria plugin archives from a directory over HTTP, as the reference's plugins host does")
	root := app.Flag("root", "Directory to serve").Required().String()
	listen := app.Flag("listen", "Address and port to listen on").Default(":80").String()
	app.MustParseWithUsage(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := pluginhttp.Serve(ctx, *root, *listen, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "choria-plugins-server: %v\n", err)
		os.Exit(1)
	}
}
