// Command choria-plugin-pack builds the artefacts Choria servers deploy at
// run time: reproducible plugin archives, the plugins manifest, its signed
// specification, and the rendered machine directories. The Nix build and the
// lab both call it so they produce identical files.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/choria-io/fisk"

	"github.com/reproducible-choria/deployment/internal/pluginpack"
	"github.com/reproducible-choria/deployment/machines"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type cli struct {
	stdout io.Writer

	// archive commands
	outDir   string
	baseURL  string
	manifest string
	mtime    int64
	binary   string
	goos     string
	goarch   string

	// sign
	source      string
	seed        string
	output      string
	machineData string
	dataItem    string

	// machines
	dir         string
	gather      string
	interval    time.Duration
	factsFile   string
	maintenance time.Duration
	pluginsDir  string
	manage      time.Duration

	// actionRan tells failures of the work apart from usage errors
	actionRan bool
}

// terminate carries fisk's exit request (after --help and the like) out of
// the parser without exiting the process, so run stays testable.
type terminate int

func run(args []string, stdout io.Writer, stderr io.Writer) (code int) {
	c := &cli{stdout: stdout}

	defer func() {
		if r := recover(); r != nil {
			t, ok := r.(terminate)
			if !ok {
				panic(r)
			}
			code = int(t)
		}
	}()

	app := fisk.New("choria-plugin-pack", "Builds Choria plugin archives, manifests and machines reproducibly")
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	app.UsageWriter(stderr)
	app.Terminate(func(code int) { panic(terminate(code)) })

	archiveFlags := func(cmd *fisk.CmdClause) {
		cmd.Flag("out-dir", "Directory to write the archive to, the plugins web root").Required().StringVar(&c.outDir)
		cmd.Flag("base-url", "URL the out-dir is served at, like http://plugins.choria.local").Required().StringVar(&c.baseURL)
		cmd.Flag("manifest", "Plugins manifest to add or update the entry in, created when missing").StringVar(&c.manifest)
		cmd.Flag("mtime", "Modification time of archive entries as Unix seconds").Default("0").Int64Var(&c.mtime)
	}

	req := app.Command("requests", "Archive the requests agent binary with its DDL")
	req.Flag("binary", "The compiled requests agent (cmd/requests)").Required().ExistingFileVar(&c.binary)
	req.Flag("os", "Operating system named in the archive file name, detected when unset").StringVar(&c.goos)
	req.Flag("arch", "Architecture named in the archive file name, detected when unset").StringVar(&c.goarch)
	archiveFlags(req)
	req.Action(c.action(c.requests))

	cc := app.Command("check-choria", "Archive the check_choria Scout machine")
	archiveFlags(cc)
	cc.Action(c.action(c.checkChoria))

	sign := app.Command("sign", "Sign a plugins manifest as choria machine plugins pack does")
	sign.Arg("manifest", "The plugins manifest").Required().ExistingFileVar(&c.source)
	sign.Arg("seed", "The plugin signer ed25519 seed file, hex encoded").Required().ExistingFileVar(&c.seed)
	sign.Flag("output", "Write the specification to this file instead of standard output").StringVar(&c.output)
	sign.Flag("machine-data", "Also write a machine_data.json holding the specification").StringVar(&c.machineData)
	sign.Flag("data-item", "Data item the specification is stored under in machine-data").Default("spec").StringVar(&c.dataItem)
	sign.Action(c.action(c.sign))

	facts := app.Command("facts-machine", "Write the facts machine directory")
	facts.Flag("dir", "Machine directory to write, like /etc/choria/machine/facts").Required().StringVar(&c.dir)
	facts.Flag("gather", "The compiled gatherer (cmd/choria-facts) to install as gather").ExistingFileVar(&c.gather)
	facts.Flag("interval", "Interval between gathers").Default("10m").DurationVar(&c.interval)
	facts.Flag("facts-file", "Facts file the gatherer writes").Default("/etc/choria/facts.json").StringVar(&c.factsFile)
	facts.Flag("maintenance-timeout", "How long maintenance lasts before gathering resumes").Default("24h").DurationVar(&c.maintenance)
	facts.Action(c.action(c.factsMachine))

	ea := app.Command("external-agents-machine", "Write the external agents manager machine directory")
	ea.Flag("dir", "Machine directory to write, like /etc/choria/machine/external_agents").Required().StringVar(&c.dir)
	ea.Flag("plugins-directory", "Directory agents are deployed into").Default("/var/lib/choria/plugins/mcollective/agent").StringVar(&c.pluginsDir)
	ea.Flag("machine-data", "A machine_data.json made by sign --machine-data to install with it").ExistingFileVar(&c.machineData)
	ea.Flag("interval", "Interval between reads of the plugins specification (default: the shipped 6m)").DurationVar(&c.interval)
	ea.Flag("manage-interval", "Interval between checks of each deployed plugin (default: the shipped 5m)").DurationVar(&c.manage)
	ea.Action(c.action(c.externalAgentsMachine))

	ccm := app.Command("check-choria-machine", "Write the check_choria machine directory, the source of the check-choria archive")
	ccm.Flag("dir", "Machine directory to write, like ~/plugins/check_choria").Required().StringVar(&c.dir)
	ccm.Flag("interval", "Interval between checks (default: the shipped 5m)").DurationVar(&c.interval)
	ccm.Action(c.action(c.checkChoriaMachine))

	// fisk prints usage and exits 0 without a command, a build script that
	// lost its arguments must fail instead
	if len(args) == 0 {
		app.Usage(nil)
		return 2
	}

	_, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "choria-plugin-pack: %v\n", err)
		if !c.actionRan {
			return 2
		}
		return 1
	}

	return 0
}

func (c *cli) action(f func() error) fisk.Action {
	return func(*fisk.ParseContext) error {
		c.actionRan = true
		return f()
	}
}

func (c *cli) sourceURL(file string) (string, error) {
	base := strings.TrimRight(c.baseURL, "/")
	if base == "" {
		return "", fmt.Errorf("base URL is required")
	}
	return base + "/" + file, nil
}

// archive builds, writes and records one plugin.
func (c *cli) archive(p pluginpack.Plugin, file string) error {
	p.ModTime = time.Unix(c.mtime, 0).UTC()

	a, err := pluginpack.Build(p)
	if err != nil {
		return err
	}

	err = os.MkdirAll(c.outDir, 0o755)
	if err != nil {
		return fmt.Errorf("creating %s: %w", c.outDir, err)
	}
	path, err := pluginpack.WriteArchive(a, c.outDir, file)
	if err != nil {
		return err
	}

	source, err := c.sourceURL(file)
	if err != nil {
		return err
	}
	entry, err := a.Entry(source)
	if err != nil {
		return err
	}

	if c.manifest != "" {
		var entries []pluginpack.Entry
		dat, err := os.ReadFile(c.manifest)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("reading manifest: %w", err)
		default:
			entries, err = pluginpack.ParseManifest(dat)
			if err != nil {
				return fmt.Errorf("manifest %s: %w", c.manifest, err)
			}
		}

		out, err := pluginpack.EncodeManifest(pluginpack.Upsert(entries, entry))
		if err != nil {
			return err
		}
		err = pluginpack.WriteFile(c.manifest, out, 0o644)
		if err != nil {
			return err
		}
	}

	fmt.Fprintf(c.stdout, "%s %s\n", a.Checksum, path)
	fmt.Fprintf(c.stdout, "%s %s/%s\n", a.SumsChecksum, p.Name, pluginpack.SumsFile)

	return nil
}

func (c *cli) requests() error {
	p, file, err := pluginpack.RequestsAgent(pluginpack.RequestsOptions{Binary: c.binary, OS: c.goos, Arch: c.goarch})
	if err != nil {
		return err
	}
	return c.archive(p, file)
}

func (c *cli) checkChoria() error {
	p, file, err := pluginpack.CheckChoria()
	if err != nil {
		return err
	}
	return c.archive(p, file)
}

func (c *cli) sign() error {
	manifest, err := os.ReadFile(c.source)
	if err != nil {
		return fmt.Errorf("reading manifest: %w", err)
	}
	key, err := pluginpack.LoadSeedFile(c.seed)
	if err != nil {
		return err
	}

	spec, err := pluginpack.Sign(manifest, key)
	if err != nil {
		return err
	}

	if c.output == "" {
		fmt.Fprintln(c.stdout, string(spec))
	} else {
		err = pluginpack.WriteFile(c.output, spec, 0o644)
		if err != nil {
			return err
		}
	}

	if c.machineData != "" {
		md, err := pluginpack.MachineData(spec, c.dataItem)
		if err != nil {
			return err
		}
		err = pluginpack.WriteFile(c.machineData, md, 0o644)
		if err != nil {
			return err
		}
	}

	return nil
}

func (c *cli) writeMachine(def []byte) error {
	err := os.MkdirAll(c.dir, 0o755)
	if err != nil {
		return fmt.Errorf("creating %s: %w", c.dir, err)
	}
	return pluginpack.WriteFile(filepath.Join(c.dir, "machine.yaml"), def, 0o644)
}

// install copies a file into the machine directory atomically, the server
// may be watching the directory.
func (c *cli) install(src string, name string, mode os.FileMode) error {
	dat, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	return pluginpack.WriteFile(filepath.Join(c.dir, name), dat, mode)
}

func (c *cli) factsMachine() error {
	def, err := machines.RenderFacts(machines.FactsOptions{
		Interval:           c.interval,
		Output:             c.factsFile,
		MaintenanceTimeout: c.maintenance,
	})
	if err != nil {
		return err
	}

	// install the gatherer first so the machine never starts without it
	if c.gather != "" {
		err = os.MkdirAll(c.dir, 0o755)
		if err != nil {
			return fmt.Errorf("creating %s: %w", c.dir, err)
		}
		err = c.install(c.gather, "gather", 0o755)
		if err != nil {
			return err
		}
	}

	return c.writeMachine(def)
}

func (c *cli) checkChoriaMachine() error {
	def, err := machines.RenderCheckChoria(c.interval)
	if err != nil {
		return err
	}
	return c.writeMachine(def)
}

func (c *cli) externalAgentsMachine() error {
	def, err := machines.RenderExternalAgents(machines.ExternalAgentsOptions{
		PluginsDirectory: c.pluginsDir, Interval: c.interval, ManageInterval: c.manage,
	})
	if err != nil {
		return err
	}

	if c.machineData != "" {
		err = os.MkdirAll(c.dir, 0o755)
		if err != nil {
			return fmt.Errorf("creating %s: %w", c.dir, err)
		}
		err = c.install(c.machineData, "machine_data.json", 0o644)
		if err != nil {
			return err
		}
	}

	return c.writeMachine(def)
}
