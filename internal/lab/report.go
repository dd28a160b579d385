package lab

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reproducible-choria/deployment/internal/supervisor"
	"github.com/reproducible-choria/deployment/topology"
)

// WriteSummary tells the user what is running and how to use it.
func (r *Running) WriteSummary(w io.Writer) {
	p := r.Plan
	l := p.Layout
	servers := 0
	for _, h := range p.Hosts {
		if h.Host.Role == topology.RoleServer {
			servers++
		}
	}
	fmt.Fprintf(w, "\nThe Choria lab is up: %d hosts, %d servers provisioned and connected in %s.\n\n", len(p.Hosts), servers, round(r.Phases.Answering))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tROLE\tADDRESSES")
	for _, h := range p.Hosts {
		if h.Host.Role == topology.RoleServer && servers > 4 && h.Host.Name != p.Topology.ServerName(1) && h.Host.Name != p.Topology.ServerName(servers) {
			continue
		}
		var addrs []string
		for _, n := range h.Host.SortedNetworks() {
			addrs = append(addrs, fmt.Sprintf("%s (%s)", h.Host.Addresses[n], n))
		}
		name := h.FQDN
		if h.Host.Role == topology.RoleServer && servers > 4 && h.Host.Name == p.Topology.ServerName(servers) {
			fmt.Fprintln(tw, "…\t\t")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, h.Host.Role, strings.Join(addrs, ", "))
	}
	tw.Flush()
	users := p.Topology.UserNames()
	fmt.Fprintf(w, `
Credentials  %s
Passwords    %s  (logins: %s)
Logs         %s  (choria-lab logs HOST [-f])
Shell        choria-lab shell          the client: then choria login, choria req choria_util info
             choria-lab shell %s    a server
Status       choria-lab status
Stop         Ctrl-C here, or choria-lab down (--purge also removes credentials)
`, l.Credentials().Dir,
		l.Credentials().UserPasswordFile("NAME"), strings.Join(users, ", "),
		filepath.Join(l.Dir, "logs"), p.Topology.ServerName(1))
}

// serverStatus is the part of a server's status file the lab reads.
type serverStatus struct {
	Identity         string `json:"identity"`
	ConnectedServer  string `json:"connected_server"`
	ProvisioningMode bool   `json:"provisioning_mode"`
}

func readServerStatus(path string) (*serverStatus, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s serverStatus
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// answering tells whether the server runs as fqdn, provisioned and
// connected to a broker.
func (s *serverStatus) answering(fqdn string) bool {
	return s.Identity == fqdn && !s.ProvisioningMode && s.ConnectedServer != ""
}

// WriteStatus prints a table of the running lab's hosts and processes.
func WriteStatus(w io.Writer, l Layout, st *State) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tROLE\tPROCESS\tPID\tRESTARTS\tHEALTH")
	for _, h := range st.Hosts {
		health := "up"
		if !supervisor.Alive(h.AnchorPID) {
			health = "namespace gone"
		}
		procs := h.Processes
		if len(procs) == 0 {
			procs = []supervisor.Snapshot{{Name: "-"}}
		}
		for _, p := range procs {
			ph := health
			if p.Name != "-" && !supervisor.Alive(p.PID) {
				ph = "down"
				if p.LastExit != "" {
					ph += " (" + p.LastExit + ")"
				}
			}
			if h.Role == topology.RoleServer && ph == "up" {
				ph = serverHealth(l, h)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", h.Name, h.Role, p.Name, p.PID, p.Restarts, ph)
		}
	}
	tw.Flush()
}

func serverHealth(l Layout, h HostState) string {
	if !l.Provisioned(h.Name) {
		return "unprovisioned"
	}
	s, err := readServerStatus(h.StatusFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "provisioned, no status yet"
	case err != nil:
		return "provisioned, status unreadable"
	}
	switch {
	case s.ProvisioningMode:
		return "provisioning"
	case s.ConnectedServer == "":
		return "provisioned, disconnected"
	default:
		return "provisioned, connected to " + s.ConnectedServer
	}
}

// WriteLogs prints a host's process logs; with follow it keeps printing
// what they append until stop is closed.
func WriteLogs(w io.Writer, l Layout, host string, follow bool, stop <-chan struct{}) error {
	files, err := filepath.Glob(filepath.Join(l.Logs(host), "*.log"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		if _, err := os.Stat(l.Host(host)); err != nil {
			return fmt.Errorf("no host %q in %s", host, l.Dir)
		}
		return fmt.Errorf("host %s has no process logs", host)
	}
	sort.Strings(files)
	offsets := make([]int64, len(files))
	prefix := len(files) > 1
	for {
		for i, f := range files {
			n, err := copyFrom(w, f, offsets[i], prefix)
			if err != nil {
				return err
			}
			offsets[i] += n
		}
		if !follow {
			return nil
		}
		select {
		case <-stop:
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func copyFrom(w io.Writer, path string, offset int64, prefix bool) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	name := strings.TrimSuffix(filepath.Base(path), ".log")
	var n int64
	br := bufio.NewReader(f)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 && strings.HasSuffix(line, "\n") {
			n += int64(len(line))
			if prefix {
				line = name + ": " + line
			}
			if _, werr := io.WriteString(w, line); werr != nil {
				return n, werr
			}
		}
		if err != nil {
			// an unfinished last line is printed once complete
			return n, nil
		}
	}
}
