// Command choria-bootstrap creates the lab's credentials and configuration
// from its topology: see internal/bootstrap.
package main

import (
	"fmt"
	"os"

	"github.com/choria-io/fisk"

	"github.com/reproducible-choria/deployment/internal/bootstrap"
	"github.com/reproducible-choria/deployment/topology"
)

func main() {
	app := fisk.New("choria-bootstrap", "Creates the Choria lab's issuer, credentials and per-role configuration from its topology.")
	out := app.Flag("out", "Output directory, one sub-directory per role").Required().String()
	topoFile := app.Flag("topology", "Topology file (default: the repository's built-in topology)").PlaceHolder("FILE").String()
	timings := app.Flag("timings", "Timing profile rendered into configurations").Default(topology.TimingsReference).Enum(topology.TimingsReference, topology.TimingsLab)
	demo := app.Flag("demo-secrets", "Use the reference README's well-known passwords and token for secrets made in this run").UnNegatableBool()
	rotate := app.Flag("rotate", "Make this role's files anew, with everything made from them (repeatable; 'all' for everything)").PlaceHolder("ROLE").Strings()
	render := app.Flag("render", "Render every configuration file again from the topology, keeping keys and secrets").UnNegatableBool()
	helper := app.Flag("provision-helper", "Command the provisioner runs as its helper").Default("choria-provision-helper").String()
	brokers := app.Flag("brokers", "Number of brokers, the first of the topology's brokers.hosts (default: its brokers.count); more than one is a cluster").PlaceHolder("N").Int()
	app.MustParseWithUsage(os.Args[1:])

	if err := run(*out, *topoFile, *brokers, *timings, *demo, *rotate, *render, *helper); err != nil {
		fmt.Fprintf(os.Stderr, "choria-bootstrap: %v\n", err)
		os.Exit(1)
	}
}

func run(out, topoFile string, brokers int, timings string, demo bool, rotate []string, render bool, helper string) error {
	t, err := topology.LoadOrDefault(topoFile)
	if err != nil {
		return err
	}
	if brokers > 0 {
		if t, err = t.WithBrokers(brokers); err != nil {
			return err
		}
	}
	res, err := bootstrap.Run(bootstrap.Options{
		Topology: t, Out: out, Timings: timings, DemoSecrets: demo,
		Rotate: rotate, Render: render, HelperCommand: helper,
	})
	if err != nil {
		return err
	}
	bootstrap.WriteSummary(os.Stdout, out, t, res)
	return nil
}
