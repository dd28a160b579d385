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
	"github.com/reproducible-choria/deployment/topology"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one sub-command, as go-choria writes its commands: its flags
// in a struct of its own, bound by setup, and its work in run.
type command interface {
	setup(app *fisk.Application) *fisk.CmdClause
	run(stdout io.Writer) error
}

// terminate carries fisk's exit request (after --help and the like) out of
// the parser without exiting the process, so run stays testable.
type terminate int

func run(args []string, stdout io.Writer, stderr io.Writer) (code int) {
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

	// actionRan tells failures of the work apart from usage errors
	actionRan := false
	for _, c := range []command{
		&requestsCommand{}, &checkChoriaCommand{}, &signCommand{},
		&factsMachineCommand{}, &externalAgentsMachineCommand{}, &checkChoriaMachineCommand{},
	} {
		c.setup(app).Action(func(*fisk.ParseContext) error {
			actionRan = true
			return c.run(stdout)
		})
	}

	// fisk prints usage and exits 0 without a command, a build script that
	// lost its arguments must fail instead
	if len(args) == 0 {
		app.Usage(nil)
		return 2
	}

	_, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "choria-plugin-pack: %v\n", err)
		if !actionRan {
			return 2
		}
		return 1
	}

	return 0
}

// archive is what both archive commands take: where the archive goes, where
// it is served from and the manifest that lists it.
type archive struct {
	outDir   string
	baseURL  string
	manifest string
	mtime    int64
}

func (a *archive) flags(cmd *fisk.CmdClause) {
	cmd.Flag("out-dir", "Directory to write the archive to, the plugins web root").Required().StringVar(&a.outDir)
	cmd.Flag("base-url", "URL the out-dir is served at, like http://plugins.choria.local").Required().StringVar(&a.baseURL)
	cmd.Flag("manifest", "Plugins manifest to add or update the entry in, created when missing").StringVar(&a.manifest)
	cmd.Flag("mtime", "Modification time of archive entries as Unix seconds").Default("0").Int64Var(&a.mtime)
}

func (a *archive) sourceURL(file string) (string, error) {
	base := strings.TrimRight(a.baseURL, "/")
	if base == "" {
		return "", fmt.Errorf("base URL is required")
	}
	return base + "/" + file, nil
}

// write builds, writes and records one plugin.
func (a *archive) write(stdout io.Writer, p pluginpack.Plugin, file string) error {
	p.ModTime = time.Unix(a.mtime, 0).UTC()

	built, err := pluginpack.Build(p)
	if err != nil {
		return err
	}

	err = os.MkdirAll(a.outDir, 0o755)
	if err != nil {
		return fmt.Errorf("creating %s: %w", a.outDir, err)
	}
	path, err := pluginpack.WriteArchive(built, a.outDir, file)
	if err != nil {
		return err
	}

	source, err := a.sourceURL(file)
	if err != nil {
		return err
	}
	entry, err := built.Entry(source)
	if err != nil {
		return err
	}

	if a.manifest != "" {
		var entries []pluginpack.Entry
		dat, err := os.ReadFile(a.manifest)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("reading manifest: %w", err)
		default:
			entries, err = pluginpack.ParseManifest(dat)
			if err != nil {
				return fmt.Errorf("manifest %s: %w", a.manifest, err)
			}
		}

		out, err := pluginpack.EncodeManifest(pluginpack.Upsert(entries, entry))
		if err != nil {
			return err
		}
		err = pluginpack.WriteFile(a.manifest, out, 0o644)
		if err != nil {
			return err
		}
	}

	fmt.Fprintf(stdout, "%s %s\n", built.Checksum, path)
	fmt.Fprintf(stdout, "%s %s/%s\n", built.SumsChecksum, p.Name, pluginpack.SumsFile)

	return nil
}

type requestsCommand struct {
	archive
	binary string
	goos   string
	goarch string
}

func (c *requestsCommand) setup(app *fisk.Application) *fisk.CmdClause {
	cmd := app.Command("requests", "Archive the requests agent binary with its DDL")
	cmd.Flag("binary", "The compiled requests agent (cmd/requests)").Required().ExistingFileVar(&c.binary)
	cmd.Flag("os", "Operating system named in the archive file name, detected when unset").StringVar(&c.goos)
	cmd.Flag("arch", "Architecture named in the archive file name, detected when unset").StringVar(&c.goarch)
	c.flags(cmd)
	return cmd
}

func (c *requestsCommand) run(stdout io.Writer) error {
	p, file, err := pluginpack.RequestsAgent(pluginpack.RequestsOptions{Binary: c.binary, OS: c.goos, Arch: c.goarch})
	if err != nil {
		return err
	}
	return c.write(stdout, p, file)
}

type checkChoriaCommand struct {
	archive
}

func (c *checkChoriaCommand) setup(app *fisk.Application) *fisk.CmdClause {
	cmd := app.Command("check-choria", "Archive the check_choria Scout machine")
	c.flags(cmd)
	return cmd
}

func (c *checkChoriaCommand) run(stdout io.Writer) error {
	p, file, err := pluginpack.CheckChoria()
	if err != nil {
		return err
	}
	return c.write(stdout, p, file)
}

type signCommand struct {
	manifest    string
	seed        string
	output      string
	machineData string
	dataItem    string
}

func (c *signCommand) setup(app *fisk.Application) *fisk.CmdClause {
	cmd := app.Command("sign", "Sign a plugins manifest as choria machine plugins pack does")
	cmd.Arg("manifest", "The plugins manifest").Required().ExistingFileVar(&c.manifest)
	cmd.Arg("seed", "The plugin signer ed25519 seed file, hex encoded").Required().ExistingFileVar(&c.seed)
	cmd.Flag("output", "Write the specification to this file instead of standard output").StringVar(&c.output)
	cmd.Flag("machine-data", "Also write a machine_data.json holding the specification").StringVar(&c.machineData)
	cmd.Flag("data-item", "Data item the specification is stored under in machine-data").Default("spec").StringVar(&c.dataItem)
	return cmd
}

func (c *signCommand) run(stdout io.Writer) error {
	manifest, err := os.ReadFile(c.manifest)
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
		fmt.Fprintln(stdout, string(spec))
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

// machineDir is the directory a machine command writes.
type machineDir struct {
	dir string
}

func (m *machineDir) writeMachine(def []byte) error {
	err := os.MkdirAll(m.dir, 0o755)
	if err != nil {
		return fmt.Errorf("creating %s: %w", m.dir, err)
	}
	return pluginpack.WriteFile(filepath.Join(m.dir, "machine.yaml"), def, 0o644)
}

// install copies a file into the machine directory atomically, the server
// may be watching the directory.
func (m *machineDir) install(src string, name string, mode os.FileMode) error {
	err := os.MkdirAll(m.dir, 0o755)
	if err != nil {
		return fmt.Errorf("creating %s: %w", m.dir, err)
	}
	dat, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	return pluginpack.WriteFile(filepath.Join(m.dir, name), dat, mode)
}

type factsMachineCommand struct {
	machineDir
	gather      string
	interval    time.Duration
	factsFile   string
	maintenance time.Duration
}

func (c *factsMachineCommand) setup(app *fisk.Application) *fisk.CmdClause {
	cmd := app.Command("facts-machine", "Write the facts machine directory")
	cmd.Flag("dir", "Machine directory to write, like /etc/choria/machine/facts").Required().StringVar(&c.dir)
	cmd.Flag("gather", "The compiled gatherer (cmd/choria-facts) to install as gather").ExistingFileVar(&c.gather)
	cmd.Flag("interval", "Interval between gathers").Default("10m").DurationVar(&c.interval)
	cmd.Flag("facts-file", "Facts file the gatherer writes").Default(topology.MustDefault().ServerPaths.FactsFile).StringVar(&c.factsFile)
	cmd.Flag("maintenance-timeout", "How long maintenance lasts before gathering resumes").Default("24h").DurationVar(&c.maintenance)
	return cmd
}

func (c *factsMachineCommand) run(io.Writer) error {
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
		err = c.install(c.gather, "gather", 0o755)
		if err != nil {
			return err
		}
	}

	return c.writeMachine(def)
}

type externalAgentsMachineCommand struct {
	machineDir
	pluginsDir  string
	machineData string
	interval    time.Duration
	manage      time.Duration
}

func (c *externalAgentsMachineCommand) setup(app *fisk.Application) *fisk.CmdClause {
	cmd := app.Command("external-agents-machine", "Write the external agents manager machine directory")
	cmd.Flag("dir", "Machine directory to write, like /etc/choria/machine/external_agents").Required().StringVar(&c.dir)
	cmd.Flag("plugins-directory", "Directory agents are deployed into").Default(topology.MustDefault().ServerPaths.AgentDir()).StringVar(&c.pluginsDir)
	cmd.Flag("machine-data", "A machine_data.json made by sign --machine-data to install with it").ExistingFileVar(&c.machineData)
	cmd.Flag("interval", "Interval between reads of the plugins specification (default: the shipped 6m)").DurationVar(&c.interval)
	cmd.Flag("manage-interval", "Interval between checks of each deployed plugin (default: the shipped 5m)").DurationVar(&c.manage)
	return cmd
}

func (c *externalAgentsMachineCommand) run(io.Writer) error {
	def, err := machines.RenderExternalAgents(machines.ExternalAgentsOptions{
		PluginsDirectory: c.pluginsDir, Interval: c.interval, ManageInterval: c.manage,
	})
	if err != nil {
		return err
	}

	if c.machineData != "" {
		err = c.install(c.machineData, "machine_data.json", 0o644)
		if err != nil {
			return err
		}
	}

	return c.writeMachine(def)
}

type checkChoriaMachineCommand struct {
	machineDir
	interval time.Duration
}

func (c *checkChoriaMachineCommand) setup(app *fisk.Application) *fisk.CmdClause {
	cmd := app.Command("check-choria-machine", "Write the check_choria machine directory, the source of the check-choria archive")
	cmd.Flag("dir", "Machine directory to write, like ~/plugins/check_choria").Required().StringVar(&c.dir)
	cmd.Flag("interval", "Interval between checks (default: the shipped 5m)").DurationVar(&c.interval)
	return cmd
}

func (c *checkChoriaMachineCommand) run(io.Writer) error {
	def, err := machines.RenderCheckChoria(c.interval)
	if err != nil {
		return err
	}
	return c.writeMachine(def)
}
