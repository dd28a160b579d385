// Package facts gathers system facts with github.com/AstroProfundis/sysinfo
// and writes them where the Choria server reads its facts file, so
// inventory, fact reports and -F discovery have data.
package facts

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/AstroProfundis/sysinfo"

	"github.com/reproducible-choria/deployment/internal/atomicfile"
)

// Gatherer collects and writes facts. The fields exist so tests can replace
// the privileged parts; zero values use the real ones.
type Gatherer struct {
	// Collect returns the facts to write, defaults to SysInfo.
	Collect func() (any, error)
	// IsRoot reports whether the process may gather, defaults to euid 0.
	IsRoot func() bool
}

// SysInfo gathers facts the same way the reference gatherer does.
func SysInfo() (_ any, err error) {
	// sysinfo dereferences what it fails to look up (an interface listed
	// in /sys but missing from the network namespace, for one); report
	// that as an error instead of a crash with a stack trace
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sysinfo failed: %v", r)
		}
	}()
	si := &sysinfo.SysInfo{}
	si.GetSysInfo()
	return si, nil
}

func (g Gatherer) collect() (any, error) {
	if g.Collect != nil {
		return g.Collect()
	}
	return SysInfo()
}

func (g Gatherer) isRoot() bool {
	if g.IsRoot != nil {
		return g.IsRoot()
	}
	return os.Geteuid() == 0
}

// ErrNotRoot is returned when gathering without root; sysinfo needs root to
// read DMI data and would otherwise produce a partial facts file.
var ErrNotRoot = errors.New("gathering facts requires root")

// Gather collects facts and writes them atomically to path.
func (g Gatherer) Gather(path string) error {
	if !g.isRoot() {
		return fmt.Errorf("%w, running as uid %d", ErrNotRoot, os.Geteuid())
	}

	data, err := g.collect()
	if err != nil {
		return fmt.Errorf("collecting facts: %w", err)
	}

	err = WriteJSON(path, data)
	if err != nil {
		return fmt.Errorf("writing facts: %w", err)
	}

	return nil
}

// WriteJSON writes v as indented JSON to a temporary file in path's
// directory and renames it over path, so readers see the old or the new
// facts but never a partial file.
func WriteJSON(path string, v any) error {
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	j = append(j, '\n')

	// facts are not secret and the server may not run as the same user
	return atomicfile.Write(path, j, 0o644)
}
