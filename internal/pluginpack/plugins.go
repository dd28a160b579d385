package pluginpack

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/reproducible-choria/deployment/agents/requests"
	"github.com/reproducible-choria/deployment/internal/atomicfile"
	"github.com/reproducible-choria/deployment/machines"
)

// RequestsOptions describe the requests agent archive.
type RequestsOptions struct {
	// Binary is the path of the compiled cmd/requests.
	Binary string
	// OS and Arch name the archive; detected from the binary when empty.
	OS   string
	Arch string
}

// RequestsAgent is the requests agent as it is deployed into the server's
// mcollective/agent directory: the executable "requests" beside its DDL
// "requests.json", where go-choria's external agent provider looks for them.
func RequestsAgent(opts RequestsOptions) (Plugin, string, error) {
	bin, err := os.ReadFile(opts.Binary)
	if err != nil {
		return Plugin{}, "", fmt.Errorf("reading requests agent binary: %w", err)
	}

	goos, goarch := opts.OS, opts.Arch
	if goos == "" || goarch == "" {
		dos, darch, err := detectPlatform(opts.Binary)
		if err != nil {
			return Plugin{}, "", fmt.Errorf("cannot tell the platform of %s, give it explicitly: %w", opts.Binary, err)
		}
		if goos == "" {
			goos = dos
		}
		if goarch == "" {
			goarch = darch
		}
	}

	ddl := requests.DDL()
	var meta struct {
		Metadata struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"metadata"`
	}
	err = json.Unmarshal(ddl, &meta)
	if err != nil {
		return Plugin{}, "", fmt.Errorf("reading requests DDL: %w", err)
	}

	p := Plugin{
		Name: meta.Metadata.Name,
		Files: []File{
			{Name: meta.Metadata.Name, Mode: 0o755, Data: bin},
			{Name: meta.Metadata.Name + ".json", Mode: 0o644, Data: ddl},
		},
	}

	// the name the reference serves the agent under
	file := fmt.Sprintf("%s-agent_%s_%s_%s.tar.gz", meta.Metadata.Name, meta.Metadata.Version, goos, goarch)

	return p, file, nil
}

// CheckChoria is the Scout check machine deployed into the machine store.
func CheckChoria() (Plugin, string, error) {
	def, err := machines.Definition(machines.CheckChoria)
	if err != nil {
		return Plugin{}, "", err
	}

	var meta struct {
		Name    string `yaml:"name"`
		Version string `yaml:"version"`
	}
	err = yaml.Unmarshal(def, &meta)
	if err != nil {
		return Plugin{}, "", fmt.Errorf("reading check_choria machine: %w", err)
	}

	p := Plugin{
		Name:  meta.Name,
		Files: []File{{Name: "machine.yaml", Mode: 0o644, Data: def}},
	}

	return p, fmt.Sprintf("%s-%s.tar.gz", meta.Name, meta.Version), nil
}

// detectPlatform reads GOOS and GOARCH names from an ELF header.
func detectPlatform(path string) (string, string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()

	arch, ok := map[elf.Machine]string{
		elf.EM_X86_64:  "amd64",
		elf.EM_AARCH64: "arm64",
		elf.EM_386:     "386",
		elf.EM_ARM:     "arm",
		elf.EM_RISCV:   "riscv64",
		elf.EM_PPC64:   "ppc64le",
		elf.EM_S390:    "s390x",
	}[f.Machine]
	if !ok {
		return "", "", fmt.Errorf("unknown ELF machine %v", f.Machine)
	}

	return "linux", arch, nil
}

// WriteArchive writes the archive into dir as file.
func WriteArchive(a *Archive, dir string, file string) (string, error) {
	if filepath.Base(file) != file {
		return "", fmt.Errorf("archive name %q must not contain directories", file)
	}

	path := filepath.Join(dir, file)
	err := atomicfile.Write(path, a.Tarball, 0o644)
	if err != nil {
		return "", fmt.Errorf("writing archive %s: %w", path, err)
	}

	return path, nil
}

// WriteFile writes data to path atomically with mode.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	err := atomicfile.Write(path, data, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
