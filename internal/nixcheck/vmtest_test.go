package nixcheck

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/reproducible-choria/deployment/topology"
)

type vmAddress struct {
	Address      string `json:"address"`
	PrefixLength int    `json:"prefixLength"`
}

type vmNode struct {
	Networking struct {
		HostName   string              `json:"hostName"`
		Domain     string              `json:"domain"`
		Hosts      map[string][]string `json:"hosts"`
		ExtraHosts string              `json:"extraHosts"`
		PrimaryIP  string              `json:"primaryIPAddress"`
		PrimaryIP6 string              `json:"primaryIPv6Address"`
		Interfaces map[string]struct {
			IPv4 struct {
				Addresses []vmAddress `json:"addresses"`
			} `json:"ipv4"`
			IPv6 struct {
				Addresses []vmAddress `json:"addresses"`
			} `json:"ipv6"`
		} `json:"interfaces"`
		Firewall struct {
			AllowedTCPPorts []int `json:"allowedTCPPorts"`
		} `json:"firewall"`
	} `json:"networking"`
	Virtualisation struct {
		VLANs             []int `json:"vlans"`
		MemorySize        int   `json:"memorySize"`
		SharedDirectories map[string]struct {
			Source string `json:"source"`
			Target string `json:"target"`
		} `json:"sharedDirectories"`
	} `json:"virtualisation"`
	Lab struct {
		Host           string `json:"host"`
		Bootstrap      bool   `json:"bootstrap"`
		CredentialsDir string `json:"credentialsDir"`
		Plugins        string `json:"plugins"`
		Servers        int    `json:"servers"`
		Brokers        int    `json:"brokers"`
	} `json:"lab"`
	Enabled       []string `json:"enabled"`
	Client        bool     `json:"client"`
	WebserverRoot string   `json:"webserverRoot"`
	DocrootScript *string  `json:"docrootScript"`
	Environment   struct {
		SystemPackages []string `json:"systemPackages"`
	} `json:"environment"`
	Systemd struct {
		Services map[string]json.RawMessage `json:"services"`
	} `json:"systemd"`
}

type vmTest struct {
	Name          string            `json:"name"`
	GlobalTimeout int               `json:"globalTimeout"`
	TestScript    string            `json:"testScript"`
	Facts         json.RawMessage   `json:"facts"`
	Nodes         map[string]vmNode `json:"nodes"`
}

// The service each role's VM must run.
var roleServices = map[string][]string{
	"broker":      {"choria-broker"},
	"provisioner": {"choria-provisioner"},
	"aaa":         {"choria-aaasvc"},
	"replicator":  {"choria-stream-replicator"},
	"nats":        {"nats"},
	"plugins":     {"choria-plugins-webserver"},
	"client":      nil,
	"server":      {"choria-server"},
}

// TestWalkthroughVMs evaluates nix/tests/walkthrough.nix (checks.walkthrough)
// and checks its nodes against topology/topology.json: one VM per host and
// two or three servers, each on the VLANs of its networks only (VLAN i is the
// topology's i-th network, attached as eth1, eth2, … in order) with the
// topology's addresses, the driver's own addresses and /etc/hosts lines
// overridden, /etc/hosts from the topology, one bootstrapping VM, and the
// role's service. It also checks that the test script names every node and
// parses as Python and passes pyflakes, as the test driver requires.
func TestWalkthroughVMs(t *testing.T) {
	vt := vmTestOf(t, "walkthrough")
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	topo = withVMServers(t, topo, vt)
	if !checkVMNodes(t, vt, topo, topo.AllHosts()) {
		return
	}
	// stdin of the scenario's commands is no terminal, as in the Go runner
	if !strings.Contains(vt.TestScript, "</dev/null 2>&1") {
		t.Error("the test script's run_command does not give commands /dev/null as stdin")
	}
}

// TestClusterVMs evaluates nix/tests/cluster.nix (checks.cluster) and holds
// its nodes to the lab's cluster topology (topology.Cluster: every broker
// listed) with its two servers: the three brokers, two servers, the client,
// the provisioner and the AAA service, each as the topology has it.
func TestClusterVMs(t *testing.T) {
	vt := vmTestOf(t, "cluster")
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	if topo, err = topo.Cluster(); err != nil {
		t.Fatal(err)
	}
	topo = withVMServers(t, topo, vt)
	var hosts []topology.Host
	for _, h := range topo.AllHosts() {
		if slices.Contains([]string{topology.RoleBroker, topology.RoleServer, topology.RoleClient, topology.RoleProvisioner, topology.RoleAAA}, h.Role) {
			hosts = append(hosts, h)
		}
	}
	if !checkVMNodes(t, vt, topo, hosts) {
		return
	}
	brokers := 0
	for _, n := range vt.Nodes {
		if n.Lab.Brokers != topo.Brokers.Count {
			t.Errorf("nodes.%s: the lab's topology has %d brokers, the cluster %d", n.Lab.Host, n.Lab.Brokers, topo.Brokers.Count)
		}
		if slices.Contains(n.Enabled, "choria-broker") {
			brokers++
		}
	}
	if brokers != 3 {
		t.Errorf("%d VMs run a broker, want 3", brokers)
	}
	for _, want := range []string{"systemctl stop choria-broker.service", "systemctl start choria-broker.service"} {
		if !strings.Contains(vt.TestScript, want) {
			t.Errorf("the test script does not run %q", want)
		}
	}
}

func vmTestOf(t *testing.T, check string) vmTest {
	t.Helper()
	res := evalModules(t)
	var vt vmTest
	if err := json.Unmarshal(res[check], &vt); err != nil {
		t.Fatalf("checks.%s: %v", check, err)
	}
	return vt
}

// withVMServers is topo with the VM test's two or three servers.
func withVMServers(t *testing.T, topo *topology.Topology, vt vmTest) *topology.Topology {
	t.Helper()
	var servers int
	for name := range vt.Nodes {
		if strings.HasPrefix(name, topo.Servers.NamePrefix) {
			servers++
		}
	}
	if servers < 2 || servers > 3 {
		t.Errorf("the VM test has %d servers, want 2 or 3", servers)
	}
	topo, err := topo.WithServers(servers)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// checkVMNodes holds the VM test's nodes to hosts of topo: one VM each,
// with the topology's networks, addresses, /etc/hosts and role, within the
// guest memory budget, and its test script to the driver's rules; false
// when the nodes are not the hosts, and nothing else could be checked.
func checkVMNodes(t *testing.T, vt vmTest, topo *topology.Topology, hosts []topology.Host) bool {
	t.Helper()
	servers := topo.Servers.Count
	var want, got []string
	for _, h := range hosts {
		want = append(want, h.Name)
	}
	for name := range vt.Nodes {
		got = append(got, name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("VM test nodes = %q, want the topology's hosts %q", got, want)
		return false
	}

	vlan := map[string]int{}
	for i, n := range topo.NetworkNames() {
		vlan[n] = i + 1
	}
	prefix := map[string]int{}
	for _, n := range topo.Networks {
		prefix[n.Name] = n.Subnet.Bits()
	}

	bootstrappers := 0
	for _, h := range hosts {
		n := vt.Nodes[h.Name]
		where := "nodes." + h.Name

		if n.Lab.Host != h.Name {
			t.Errorf("%s: services.choria-lab.host = %q", where, n.Lab.Host)
		}
		if n.Lab.Servers != servers {
			t.Errorf("%s: the lab's topology has %d servers, the test %d", where, n.Lab.Servers, servers)
		}
		if n.Lab.Bootstrap {
			bootstrappers++
		}
		if n.Networking.HostName != h.Name || n.Networking.Domain != topo.Domain {
			t.Errorf("%s: host name %q, domain %q", where, n.Networking.HostName, n.Networking.Domain)
		}

		// VLANs and addresses, in the topology's network order.
		var nets []string
		for _, name := range topo.NetworkNames() {
			if _, ok := h.Addresses[name]; ok {
				nets = append(nets, name)
			}
		}
		var wantVLANs []int
		for _, name := range nets {
			wantVLANs = append(wantVLANs, vlan[name])
		}
		if !slices.Equal(n.Virtualisation.VLANs, wantVLANs) {
			t.Errorf("%s: virtualisation.vlans = %v, want %v (its networks %q)", where, n.Virtualisation.VLANs, wantVLANs, nets)
		}
		if len(n.Networking.Interfaces) != len(nets) {
			t.Errorf("%s: %d interfaces configured, want %d", where, len(n.Networking.Interfaces), len(nets))
		}
		for i, name := range nets {
			eth := fmt.Sprintf("eth%d", i+1)
			ifc := n.Networking.Interfaces[eth]
			wantAddr := []vmAddress{{h.Addresses[name].String(), prefix[name]}}
			if !slices.Equal(ifc.IPv4.Addresses, wantAddr) {
				t.Errorf("%s: %s (network %s) has %v, want %v", where, eth, name, ifc.IPv4.Addresses, wantAddr)
			}
			if len(ifc.IPv6.Addresses) != 0 {
				t.Errorf("%s: %s keeps the driver's IPv6 addresses %v", where, eth, ifc.IPv6.Addresses)
			}
		}
		if len(nets) > 0 && n.Networking.PrimaryIP != h.Addresses[nets[0]].String() {
			t.Errorf("%s: primaryIPAddress = %q", where, n.Networking.PrimaryIP)
		}
		if n.Networking.ExtraHosts != "" {
			t.Errorf("%s: the driver's /etc/hosts lines are left in: %q", where, n.Networking.ExtraHosts)
		}

		// /etc/hosts: every other host of the topology sharing a network,
		// under that address.
		wantHosts := map[string][]string{}
		for _, o := range topo.AllHosts() {
			if o.Name == h.Name {
				continue
			}
			for _, name := range topo.NetworkNames() {
				_, mine := h.Addresses[name]
				a, theirs := o.Addresses[name]
				if mine && theirs {
					wantHosts[a.String()] = append(wantHosts[a.String()], topo.FQDN(o.Name), o.Name)
					break
				}
			}
		}
		if fmt.Sprint(n.Networking.Hosts) != fmt.Sprint(wantHosts) {
			t.Errorf("%s: networking.hosts = %v, want %v", where, n.Networking.Hosts, wantHosts)
		}

		if !slices.Equal(n.Enabled, roleServices[h.Role]) {
			t.Errorf("%s: services enabled %q, want %q for the role %s", where, n.Enabled, roleServices[h.Role], h.Role)
		}
		if n.Client != (h.Role == "client") {
			t.Errorf("%s: programs.choria.enable = %v", where, n.Client)
		}
		if h.Role == "plugins" && (n.DocrootScript == nil || !strings.Contains(*n.DocrootScript, "-choria-plugins-") ||
			!strings.Contains(*n.DocrootScript, " "+n.WebserverRoot+"/")) {
			t.Errorf("%s: serves %q, not filled with choria-plugins' docroot by choria-lab-docroot", where, n.WebserverRoot)
		}
		if h.Role == "nats" && !slices.ContainsFunc(n.Environment.SystemPackages, func(p string) bool { return strings.HasSuffix(p, "-natscli") }) {
			t.Errorf("%s: natscli is not installed (the walkthrough runs nats there)", where)
		}
		if h.Role == "client" && !slices.ContainsFunc(n.Environment.SystemPackages, func(p string) bool { return strings.HasSuffix(p, "-choria-lab-login") }) {
			t.Errorf("%s: choria-lab-login is not installed: %q", where, n.Environment.SystemPackages)
		}
		if _, ok := n.Systemd.Services["choria-lab-credentials"]; !ok && h.Role != "nats" && h.Role != "plugins" {
			t.Errorf("%s: no choria-lab-credentials service", where)
		}
	}
	if bootstrappers != 1 {
		t.Errorf("%d VMs bootstrap the credentials, want exactly one", bootstrappers)
	}

	// Client and servers share no network, as in the reference.
	client := vt.Nodes[topo.MustHost(topology.RoleClient).Name].Virtualisation.VLANs
	for _, h := range hosts {
		if h.Role != "server" {
			continue
		}
		for _, v := range vt.Nodes[h.Name].Virtualisation.VLANs {
			if slices.Contains(client, v) {
				t.Errorf("client and %s share VLAN %d", h.Name, v)
			}
		}
	}

	// The client's ~/htdocs is the plugins host's docroot: one shared
	// directory, as the namespace lab binds one directory to both.
	shares := func(name string) map[string]string {
		m := map[string]string{}
		for tag, d := range vt.Nodes[name].Virtualisation.SharedDirectories {
			m[tag] = d.Source + " -> " + d.Target
		}
		return m
	}
	for _, h := range hosts {
		got := shares(h.Name)
		switch h.Role {
		case "client", "plugins":
			target := "/root/htdocs"
			if h.Role == "plugins" {
				target = vt.Nodes[h.Name].WebserverRoot
			}
			source, gotTarget, _ := strings.Cut(got["choria-htdocs"], " -> ")
			if len(got) != 1 || gotTarget != target {
				t.Errorf("nodes.%s: shared directories %v, want choria-htdocs on %s", h.Name, got, target)
				continue
			}
			// qemu-vm.nix's start script puts the source on QEMU's command
			// line as shell: it must name, and make, the directory under
			// the driver's shared directory, so that start_all() by hand works
			shared := t.TempDir()
			cmd := exec.Command("bash", "-c", "printf %s "+source)
			cmd.Env = append(os.Environ(), "SHARED_DIR="+shared)
			out, err := cmd.Output()
			if err != nil || string(out) != shared+"/choria-htdocs" {
				t.Errorf("nodes.%s: share source %s gives %q (%v), want %s/choria-htdocs", h.Name, source, out, err, shared)
			} else if st, err := os.Stat(string(out)); err != nil || !st.IsDir() {
				t.Errorf("nodes.%s: share source %s does not make its directory", h.Name, source)
			}
		default:
			if len(got) != 0 {
				t.Errorf("nodes.%s: shares %v", h.Name, got)
			}
		}
	}

	// every guest's memory together fits a 16 GiB CI runner beside the driver
	total := 0
	for _, n := range vt.Nodes {
		if n.Virtualisation.MemorySize < 384 {
			t.Errorf("a guest of %d MiB cannot boot NixOS and run its role", n.Virtualisation.MemorySize)
		}
		total += n.Virtualisation.MemorySize
	}
	if total > 6144 {
		t.Errorf("the VMs take %d MiB of guest memory, more than 6 GiB", total)
	}
	t.Logf("guest memory of the %d VMs: %d MiB", len(vt.Nodes), total)

	checkTestScript(t, vt, want)
	return true
}

var machinesLineRE = regexp.MustCompile(`(?m)^MACHINES = \{(.*)\}$`)

func checkTestScript(t *testing.T, vt vmTest, nodes []string) {
	t.Helper()
	// the driver's shared directory is mounted by every VM: no role's
	// credentials may pass through it
	for _, shared := range []string{"copy_from_host", "shared_dir"} {
		if strings.Contains(vt.TestScript, shared) {
			t.Errorf("the test script uses %s: credentials would pass through the directory every VM mounts", shared)
		}
	}
	m := machinesLineRE.FindStringSubmatch(vt.TestScript)
	if m == nil {
		t.Fatalf("the test script has no MACHINES line:\n%s", vt.TestScript)
	}
	var named []string
	for _, entry := range strings.Split(m[1], ", ") {
		key, value, _ := strings.Cut(entry, ": ")
		if key != `"`+value+`"` {
			t.Errorf("MACHINES maps %s to %s", key, value)
		}
		named = append(named, value)
	}
	slices.Sort(named)
	if !slices.Equal(named, nodes) {
		t.Errorf("MACHINES names %q, want every node %q", named, nodes)
	}

	dir := t.TempDir()
	script := filepath.Join(dir, "test-script")
	if err := os.WriteFile(script, []byte(vt.TestScript), 0o644); err != nil {
		t.Fatal(err)
	}
	python := testenv.RequireTool(t, "python3")
	if out, err := exec.Command(python, "-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())", script).CombinedOutput(); err != nil {
		t.Errorf("the test script does not parse as Python: %v\n%s", err, out)
	}
	pyflakes := ""
	for _, name := range []string{"pyflakes", "pyflakes3"} {
		if p, err := exec.LookPath(name); err == nil {
			pyflakes = p
			break
		}
	}
	if pyflakes == "" {
		testenv.Missing(t, "pyflakes is not installed (apt-get install pyflakes3): the test script is not linted")
	}
	// The driver's own symbols, as nixos/lib/testing/driver.nix passes them.
	builtins := append(slices.Clone(nodes), "start_all", "subtest", "log", "driver", "retry", "os",
		"join_all", "run_tests", "test_script", "serial_stdout_on", "serial_stdout_off", "polling_condition",
		"create_machine", "vlans", "t", "debug", "machines", "machines_qemu", "machines_nspawn")
	cmd := exec.Command(pyflakes, script)
	cmd.Env = append(os.Environ(), "PYFLAKES_BUILTINS="+strings.Join(builtins, ","))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("pyflakes rejects the test script (so would the test driver): %v\n%s", err, out)
	}
}
