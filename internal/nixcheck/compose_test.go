package nixcheck

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/reproducible-choria/deployment/internal/bootstrap"
	"github.com/reproducible-choria/deployment/internal/lab"
	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/reproducible-choria/deployment/internal/walkthrough"
	"github.com/reproducible-choria/deployment/machines"
	"github.com/reproducible-choria/deployment/topology"
)

const composePath = "nix/compose/docker-compose.yaml"

// composeFile is the part of the Compose specification the file uses;
// decoding refuses any other key, so a misspelt one cannot pass unseen.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		Internal bool `yaml:"internal"`
		IPAM     struct {
			Config []struct {
				Subnet  string `yaml:"subnet"`
				Gateway string `yaml:"gateway"`
				IPRange string `yaml:"ip_range"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
	Volumes map[string]any `yaml:"volumes"`
	// x- extension fields (the anchors), ignored by Compose
	Extensions map[string]any `yaml:",inline"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	PullPolicy  string         `yaml:"pull_policy"`
	Restart     string         `yaml:"restart"`
	Hostname    string         `yaml:"hostname"`
	Domainname  string         `yaml:"domainname"`
	DNSSearch   string         `yaml:"dns_search"`
	NetworkMode string         `yaml:"network_mode"`
	Profiles    []string       `yaml:"profiles"`
	Entrypoint  []string       `yaml:"entrypoint"`
	Command     []string       `yaml:"command"`
	StdinOpen   bool           `yaml:"stdin_open"`
	TTY         bool           `yaml:"tty"`
	Sysctls     map[string]int `yaml:"sysctls"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test          []string `yaml:"test"`
		Interval      string   `yaml:"interval"`
		Timeout       string   `yaml:"timeout"`
		Retries       int      `yaml:"retries"`
		StartPeriod   string   `yaml:"start_period"`
		StartInterval string   `yaml:"start_interval"`
	} `yaml:"healthcheck"`
	Volumes  []composeMount  `yaml:"volumes"`
	Networks serviceNetworks `yaml:"networks"`
}

type composeMount struct {
	Type     string `yaml:"type"`
	Source   string `yaml:"source"`
	Target   string `yaml:"target"`
	ReadOnly bool   `yaml:"read_only"`
	Volume   struct {
		Nocopy  bool   `yaml:"nocopy"`
		Subpath string `yaml:"subpath"`
	} `yaml:"volume"`
}

type serviceNetwork struct {
	IPv4Address string
	Aliases     []string
}

// serviceNetworks is a service's networks, written as a list of names or
// as a map of names to their address and aliases.
type serviceNetworks map[string]serviceNetwork

func (n *serviceNetworks) UnmarshalYAML(v *yaml.Node) error {
	*n = serviceNetworks{}
	if v.Kind == yaml.SequenceNode {
		var names []string
		if err := v.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			(*n)[name] = serviceNetwork{}
		}
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: networks must be a list or a map", v.Line)
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		var sn serviceNetwork
		val := v.Content[i+1]
		for j := 0; j+1 < len(val.Content); j += 2 {
			switch key := val.Content[j].Value; key {
			case "ipv4_address":
				sn.IPv4Address = val.Content[j+1].Value
			case "aliases":
				if err := val.Content[j+1].Decode(&sn.Aliases); err != nil {
					return err
				}
			default:
				return fmt.Errorf("line %d: network key %q is not used here", val.Content[j].Line, key)
			}
		}
		(*n)[v.Content[i].Value] = sn
	}
	return nil
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, testenv.ModuleRoot(t), composePath)))
	dec.KnownFields(true)
	var c composeFile
	require.NoError(t, dec.Decode(&c), composePath)
	for k := range c.Extensions {
		require.True(t, strings.HasPrefix(k, "x-"), "%s: unknown top-level key %q", composePath, k)
	}
	return &c
}

var imageRefRE = regexp.MustCompile(`^choria-lab-([a-z]+):\$\{(CHORIA_LAB_TAG_[A-Z]+):\?[^}]+\}$`)

// role is the image role a service runs (choria-lab-ROLE).
func (s composeService) role() string {
	if m := imageRefRE.FindStringSubmatch(s.Image); m != nil {
		return m[1]
	}
	return ""
}

// fixed is the service's topology address on each network it has one on.
func (s composeService) fixed() map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for name, n := range s.Networks {
		if n.IPv4Address != "" {
			out[name], _ = netip.ParseAddr(n.IPv4Address)
		}
	}
	return out
}

func (s composeService) mounts(source string) []composeMount {
	var out []composeMount
	for _, m := range s.Volumes {
		if m.Source == source {
			out = append(out, m)
		}
	}
	return out
}

// composeFixture is what every compose check reads: the file, the images
// laid out, the topology, the namespace lab's plan of it, and one run of
// setup's script; and the same of the cluster profile.
type composeFixture struct {
	c     *composeFile
	ev    *imageEval
	b     *builder
	topo  *topology.Topology
	plan  *lab.Plan
	creds string // setup's /credentials
	doc   string // setup's /docroot, the plugins volume
	owner []ownership
	// the cluster profile: its topology (every broker) and plan, and setup's
	// credentials made for it (--brokers)
	cluster      *topology.Topology
	clusterPlan  *lab.Plan
	clusterCreds string
	clusterOwner []ownership
	// provisioned is the servers' configuration the provisioner writes
	// (choria-provision-helper's settings)
	provisioned map[string]string
}

func newComposeFixture(t *testing.T) *composeFixture {
	f := &composeFixture{c: loadCompose(t), ev: evalImages(t)}
	f.b = newBuilder(t, f.ev)
	var err error
	f.topo, err = topology.Default()
	require.NoError(t, err)
	f.plan = labPlan(t, f.topo.Servers.Count)
	f.cluster, err = f.topo.Cluster()
	require.NoError(t, err)
	f.clusterPlan = planOf(t, f.cluster)
	f.creds, f.doc = filepath.Join(f.b.dir, "credentials"), filepath.Join(f.b.dir, "docroot")
	require.NoError(t, os.MkdirAll(f.doc, 0o755))
	f.clusterCreds = filepath.Join(f.b.dir, "credentials-cluster")
	f.creds, f.clusterCreds = f.clusterCreds, f.creds
	_, f.clusterOwner = f.setup(t, "random", "--brokers", strconv.Itoa(f.cluster.Brokers.Count))
	f.creds, f.clusterCreds = f.clusterCreds, f.creds
	_, f.owner = f.setup(t, "random", "--brokers", "1")
	helper, err := os.ReadFile(bootstrap.Output{Dir: f.creds}.HelperConfig())
	require.NoError(t, err)
	var hc struct{ Settings map[string]string }
	require.NoError(t, json.Unmarshal(helper, &hc))
	f.provisioned = hc.Settings
	for role := range f.ev.Images {
		f.b.image(role)
	}
	return f
}

// setup runs setup's image script with the volumes at creds and doc and
// returns its output and the ownership it set.
func (f *composeFixture) setup(t *testing.T, args ...string) ([]byte, []ownership) {
	t.Helper()
	b := f.b.with(t)
	img := b.image("setup")
	require.Len(t, f.ev.Images["setup"].Config.Entrypoint, 1)
	script, err := os.ReadFile(img.file(f.ev.Images["setup"].Config.Entrypoint[0]))
	require.NoError(t, err)
	s := strings.NewReplacer("creds=/credentials\n", "creds="+f.creds+"\n", "docroot=/docroot\n", "docroot="+f.doc+"\n").Replace(string(script))
	require.NotEqual(t, string(script), s, "setup's script no longer sets creds=/credentials and docroot=/docroot")
	owners := filepath.Join(b.dir, "owners-setup-run")
	require.NoError(t, os.RemoveAll(owners))
	out := b.runArgs("choria-lab-setup", s, "", args, "OWNERS="+owners)
	return out, readOwners(t, owners, "")
}

// clusterProfile is the profile of the services only the cluster runs.
const clusterProfile = "cluster"

// inCluster tells whether the service runs in the cluster profile only.
func (s composeService) inCluster() bool { return slices.Contains(s.Profiles, clusterProfile) }

// credsOf is the credentials volume as setup makes it for the service's
// profile.
func (f *composeFixture) credsOf(s composeService) string {
	if s.inCluster() {
		return f.clusterCreds
	}
	return f.creds
}

// natsStream is the cluster profile's one-shot that makes the replicator's
// target stream on the NATS host.
const natsStream = "nats-stream"

// secret is what setup prints when asked for one.
func (f *composeFixture) secret(t *testing.T, args ...string) []byte {
	t.Helper()
	out, _ := f.setup(t, args...)
	return out
}

// TestComposeRunsTheWalkthrough reads nix/compose/docker-compose.yaml and
// the images of nix/images.nix (evaluated with nixpkgs' lib and stand-ins
// for dockerTools that record their arguments, then laid out as
// dockerTools lays them out) and proves what `docker compose up` and the
// tour on it need: every step's host holds the programs the step calls,
// every host a configuration names is an alias on a network its reader
// shares, addresses never clash (under --scale either), credentials are
// mounted read-only, networks are internal, servers are server1…N, and up
// --wait waits for what the namespace lab waits for.
func TestComposeRunsTheWalkthrough(t *testing.T) {
	f := newComposeFixture(t)
	t.Run("images", f.checkImages)
	t.Run("hosts", f.checkHosts)
	t.Run("networks", f.checkNetworks)
	t.Run("readiness", f.checkReadiness)
	t.Run("mounts", f.checkMounts)
	t.Run("setup", f.checkSetup)
	t.Run("servers", f.checkServerImage)
	t.Run("tour", f.checkTour)
	t.Run("fqdns", f.checkFQDNs)
	t.Run("small", f.checkSmall)
	t.Run("instructions", f.checkInstructions)
}

// checkImages: every service runs one of the images, by the tag
// choria-lab-load-images writes, which is derived from the image's
// content, and never pulls.
func (f *composeFixture) checkImages(t *testing.T) {
	load := f.ev.Load.Text
	for role, img := range f.ev.Images {
		assert.Nil(t, img.Tag, "image %s has a constant tag: a rebuilt image would keep it", role)
		assert.Equal(t, "choria-lab-"+role, img.Name)
		assert.Contains(t, load, fmt.Sprintf("'CHORIA_LAB_TAG_%s=%s'", strings.ToUpper(role), img.ImageTag), "the loader does not write %s's tag", role)
		assert.Regexp(t, `/nix/store/\S+-stream-`+regexp.QuoteMeta(img.Name)+` \| docker load`, load, "the loader does not load %s", role)
		// the role's Go runtime, as its unit and the lab's process run it
		assert.Equal(t, goRuntime(f.topo.Roles[role].GoRuntimeEnv()), goRuntime(img.Config.Env), "image %s: Go runtime", role)
	}
	for name, s := range f.c.Services {
		m := imageRefRE.FindStringSubmatch(s.Image)
		if !assert.NotNil(t, m, "%s: image %q is not choria-lab-ROLE:${CHORIA_LAB_TAG_ROLE:?…}", name, s.Image) {
			continue
		}
		assert.Equal(t, "CHORIA_LAB_TAG_"+strings.ToUpper(m[1]), m[2], name)
		assert.Contains(t, f.ev.Images, m[1], "%s: no image %s", name, m[1])
		assert.Equal(t, "never", s.PullPolicy, "%s: images are loaded, never pulled", name)
	}
}

// checkHosts: each topology host is the service of its name, on its
// networks at its addresses, known there by its FQDN, with its FQDN as
// host name: the servers are server1…N, the tour's names, not container
// ids.
func (f *composeFixture) checkHosts(t *testing.T) {
	hosts := f.topo.AllHosts()
	for _, h := range hosts {
		s, ok := f.c.Services[h.Name]
		if !assert.True(t, ok, "no service for the topology's host %s", h.Name) {
			continue
		}
		assert.Empty(t, s.Profiles, "%s is part of the lab", h.Name)
		f.checkHost(t, h, s)
	}
	// the cluster profile's other brokers
	for _, h := range f.cluster.BrokerHosts() {
		if slices.ContainsFunc(hosts, func(o topology.Host) bool { return o.Name == h.Name }) {
			continue
		}
		s, ok := f.c.Services[h.Name]
		if !assert.True(t, ok, "no service for the cluster's broker %s", h.Name) {
			continue
		}
		assert.Equal(t, []string{clusterProfile}, s.Profiles, "%s is part of the cluster profile only", h.Name)
		f.checkHost(t, h, s)
		hosts = append(hosts, h)
	}
	// Besides the hosts: setup, on no network, the scale profile's
	// servers, which are not the tour's, and the cluster's one-shot on
	// the NATS host's network.
	for name, s := range f.c.Services {
		if slices.ContainsFunc(hosts, func(h topology.Host) bool { return h.Name == name }) {
			continue
		}
		switch {
		case name == "setup":
			assert.Equal(t, "none", s.NetworkMode, "setup needs no network")
		case name == natsStream:
			assert.Equal(t, []string{clusterProfile}, s.Profiles, name)
			assert.Equal(t, topology.RoleNATS, s.role(), name)
			assert.Empty(t, s.fixed(), "%s: a one-shot holds no address", name)
		case s.role() == topology.RoleServer:
			assert.NotEmpty(t, s.Profiles, "%s: a server outside the topology would change the tour's server count", name)
			assert.Empty(t, s.Hostname, "%s: replicas need names of their own", name)
			assert.Empty(t, s.fixed(), "%s: replicas cannot share an address", name)
		default:
			t.Errorf("service %s is no host of the topology", name)
		}
	}
}

// checkHost: the service runs the host's role, on its networks at its
// addresses, known there by its FQDN, with its FQDN as host name.
func (f *composeFixture) checkHost(t *testing.T, h topology.Host, s composeService) {
	t.Helper()
	assert.Equal(t, h.Role, s.role(), "%s runs the wrong image", h.Name)
	fqdn := f.topo.FQDN(h.Name)
	assert.Equal(t, fqdn, containerFQDN(s), "%s: the container's FQDN (its identity, for a server)", h.Name)
	if h.Role == topology.RoleServer {
		// go-choria (config.go) takes a host name with more than one
		// dot as the identity, with no DNS lookup
		assert.Greater(t, strings.Count(s.Hostname, "."), 1, "%s: the host name is not the identity", h.Name)
	}
	var nets []string
	for n := range s.Networks {
		nets = append(nets, n)
	}
	assert.ElementsMatch(t, h.SortedNetworks(), nets, "%s: networks", h.Name)
	for n, a := range h.Addresses {
		assert.Equal(t, a.String(), s.Networks[n].IPv4Address, "%s on %s", h.Name, n)
		assert.Contains(t, s.Networks[n].Aliases, fqdn, "%s on %s", h.Name, n)
	}
}

// containerFQDN is the FQDN a container gets from hostname and domainname.
func containerFQDN(s composeService) string {
	if strings.Contains(s.Hostname, ".") || s.Hostname == "" {
		return s.Hostname
	}
	return s.Hostname + "." + s.Domainname
}

// checkNetworks: the topology's networks, internal (no route out, as in
// the namespace lab), each topology address used once and outside the
// range Docker hands out dynamic addresses from and its gateway, so a
// scaled service never takes one.
func (f *composeFixture) checkNetworks(t *testing.T) {
	var names []string
	for n := range f.c.Networks {
		names = append(names, n)
	}
	assert.ElementsMatch(t, f.topo.NetworkNames(), names)
	for _, tn := range f.topo.Networks {
		n, ok := f.c.Networks[tn.Name]
		if !ok {
			continue
		}
		assert.True(t, n.Internal, "%s is not internal: its containers would have a route out", tn.Name)
		if !assert.Len(t, n.IPAM.Config, 1, tn.Name) {
			continue
		}
		cfg := n.IPAM.Config[0]
		assert.Equal(t, tn.Subnet.String(), cfg.Subnet, tn.Name)
		gw, err := netip.ParseAddr(cfg.Gateway)
		require.NoError(t, err, "%s: gateway", tn.Name)
		pool, err := netip.ParsePrefix(cfg.IPRange)
		require.NoError(t, err, "%s: ip_range", tn.Name)
		assert.True(t, tn.Subnet.Contains(gw), "%s: gateway outside the subnet", tn.Name)
		assert.True(t, tn.Subnet.Contains(pool.Addr()) && pool.Bits() >= tn.Subnet.Bits(), "%s: ip_range outside the subnet", tn.Name)
		assert.False(t, pool.Contains(gw), "%s: the gateway is in ip_range", tn.Name)
		seen := map[netip.Addr]string{}
		for name, s := range f.c.Services {
			sn, on := s.Networks[tn.Name]
			if !on {
				continue
			}
			a, ok := s.fixed()[tn.Name]
			if !ok {
				// scaled: Docker picks from ip_range
				assert.Empty(t, sn.Aliases, "%s: replicas would share the alias", name)
				continue
			}
			assert.True(t, tn.Subnet.Contains(a), "%s: %s outside %s", name, a, tn.Name)
			assert.False(t, pool.Contains(a), "%s: %s is in %s's ip_range, where a scaled container may take it first", name, a, tn.Name)
			assert.NotEqual(t, gw, a, "%s has the gateway's address", name)
			if other, dup := seen[a]; dup {
				t.Errorf("%s and %s both have %s on %s", name, other, a, tn.Name)
			}
			seen[a] = name
		}
		// room for the scaled servers: as many as the topology's pool allows
		if tn.Name == f.topo.Servers.Network {
			assert.GreaterOrEqual(t, 1<<(32-pool.Bits()), 256, "%s: ip_range leaves little room for --scale", tn.Name)
		}
	}
}

// checkReadiness: restart policies; setup runs once and every service
// that needs its work waits for it (which also lets `up --wait` return:
// a one-shot container adopted with service_completed_successfully);
// each long-running service but the client has a healthcheck, the same
// readiness the namespace lab waits for: choria-ready dialling the lab's
// address, or for a server its status file, provisioned.
func (f *composeFixture) checkReadiness(t *testing.T) {
	b := f.b.with(t)
	ready := map[string]string{}
	for _, hp := range append(slices.Clone(f.plan.Hosts), f.clusterPlan.Hosts...) {
		for _, p := range hp.Processes {
			if p.Ready != "" {
				ready[hp.Host.Name] = p.Ready
			}
		}
	}
	for name, s := range f.c.Services {
		switch name {
		case "setup":
			assert.Equal(t, "no", s.Restart, "setup runs once")
			assert.Nil(t, s.Healthcheck)
			continue
		case natsStream:
			f.checkNATSStream(t, s)
			continue
		}
		assert.Contains(t, []string{"unless-stopped", "always"}, s.Restart, "%s: restart policy", name)
		if len(s.mounts("credentials"))+len(s.mounts("plugins")) > 0 {
			assert.Equal(t, "service_completed_successfully", s.DependsOn["setup"].Condition, "%s uses setup's work", name)
		}
		for dep, d := range s.DependsOn {
			ds, ok := f.c.Services[dep]
			if assert.True(t, ok, "%s depends on no service %s", name, dep) && d.Condition == "service_healthy" {
				assert.NotNil(t, ds.Healthcheck, "%s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		img := b.image(s.role())
		hc := s.Healthcheck
		switch {
		case name == "client":
			assert.Nil(t, hc, "the client is a shell")
			continue
		case !assert.NotNil(t, hc, "%s has no healthcheck: up --wait would not wait for it", name):
			continue
		}
		assert.NotEmpty(t, hc.StartPeriod, name)
		if addr, ok := ready[name]; ok {
			assert.Equal(t, []string{"CMD", "/bin/choria-ready", addr}, hc.Test, "%s: the lab waits for %s", name, addr)
		} else {
			require.Equal(t, topology.RoleServer, s.role(), "%s: the lab has no readiness for it", name)
			require.Len(t, hc.Test, 2)
			assert.Equal(t, "CMD-SHELL", hc.Test[0])
			status := f.provisioned["plugin.choria.status_file_path"]
			assert.Regexp(t, `^choria tool status --status-file `+regexp.QuoteMeta(status)+` .*--provisioned`, hc.Test[1], "%s: the status file the provisioned server writes", name)
		}
		for _, p := range healthcheckPrograms(t, hc.Test) {
			assert.True(t, img.has(p), "%s: the healthcheck runs %s, which image %s lacks", name, p, s.role())
		}
	}
	for _, must := range []string{"broker", "aaa", "provisioner"} {
		assert.NotNil(t, f.c.Services[must].Healthcheck, "up --wait must wait for %s", must)
	}
}

func healthcheckPrograms(t *testing.T, test []string) []string {
	t.Helper()
	require.NotEmpty(t, test)
	switch test[0] {
	case "CMD":
		return test[1:2]
	case "CMD-SHELL":
		progs, err := programsOf(test[1])
		require.NoError(t, err)
		return append(progs, "sh")
	}
	t.Fatalf("healthcheck test %q", test)
	return nil
}

// checkNATSStream: the cluster's one-shot makes, once NATS serves, the
// stream the namespace lab makes on the NATS host before the replicator
// starts (lab.NATSTargetStreamArgs), through the NATS host's name.
func (f *composeFixture) checkNATSStream(t *testing.T, s composeService) {
	assert.Equal(t, "on-failure", s.Restart, "%s runs until it has made the stream", natsStream)
	assert.Nil(t, s.Healthcheck, "%s is a one-shot", natsStream)
	assert.Equal(t, "service_healthy", s.DependsOn["nats"].Condition, "%s waits for NATS to serve", natsStream)
	want := lab.NATSTargetStreamArgs(f.cluster)
	require.NotNil(t, want)
	require.Equal(t, "--server", want[0])
	nats := f.cluster.MustHost(topology.RoleNATS)
	want[1] = fmt.Sprintf("nats://%s:%d", f.cluster.FQDN(nats.Name), f.cluster.Ports.NATSClient)
	assert.Equal(t, want, s.Command, "%s makes the stream the namespace lab makes", natsStream)
	require.Len(t, s.Entrypoint, 1)
	assert.True(t, f.b.with(t).image(s.role()).has(strings.TrimPrefix(s.Entrypoint[0], "/bin/")), "%s runs %s, which image %s lacks", natsStream, s.Entrypoint[0], s.role())
	assert.True(t, f.reaches(s, f.cluster.FQDN(nats.Name)), "%s does not reach the NATS host", natsStream)
}

// checkMounts: credentials read-only wherever they are mounted but in
// setup, each service only its role's (or the files of it it needs),
// every subpath one setup makes; the plugins volume read-only where it is
// served.
func (f *composeFixture) checkMounts(t *testing.T) {
	for name, s := range f.c.Services {
		for _, m := range s.Volumes {
			assert.Equal(t, "volume", m.Type, "%s: %s", name, m.Target)
			assert.Contains(t, f.c.Volumes, m.Source, "%s: %s", name, m.Target)
			if name == "setup" {
				continue
			}
			switch m.Source {
			case "credentials":
				assert.True(t, m.ReadOnly, "%s mounts credentials read-write at %s", name, m.Target)
				assert.True(t, m.Volume.Nocopy, "%s: %s", name, m.Target)
				dir, want := strings.SplitN(m.Volume.Subpath, "/", 2)[0], s.role()
				if want == topology.RoleBroker {
					want = bootstrap.BrokerDir(name) // every broker has its own
				}
				assert.Equal(t, want, dir, "%s mounts %s's credentials", name, dir)
				_, err := os.Stat(filepath.Join(f.credsOf(s), m.Volume.Subpath))
				assert.NoError(t, err, "%s mounts %s, which setup does not make", name, m.Volume.Subpath)
			case "plugins":
				assert.True(t, m.Volume.Nocopy, "%s: %s", name, m.Target)
				assert.Equal(t, s.role() == topology.RolePlugins, m.ReadOnly, "%s: the plugins host only reads the plugins volume, the client writes it", name)
			}
		}
	}
}

// checkSetup: setup's script makes the credentials, hands each role's to
// the images' user, prints a password or the token when asked, and
// replaces plugin archives an image rebuild changed but keeps those a
// person replaced.
func (f *composeFixture) checkSetup(t *testing.T) {
	b := f.b.with(t)
	for _, dir := range []string{"broker", "aaa", "provisioner", "replicator", "client"} {
		assert.Equal(t, "1000:1000", ownerOf(f.owner, filepath.Join(f.creds, dir, "x")), "%s's credentials are not handed to uid 1000", dir)
	}
	// --brokers: every broker's own, and what names them lists all
	for _, b := range f.cluster.BrokerHosts() {
		dir := bootstrap.BrokerDir(b.Name)
		assert.Equal(t, "1000:1000", ownerOf(f.clusterOwner, filepath.Join(f.clusterCreds, dir, "x")), "%s's credentials are not handed to uid 1000", dir)
	}
	_, err := os.Stat(filepath.Join(f.creds, bootstrap.BrokerDir(f.cluster.BrokerHosts()[1].Name)))
	assert.True(t, os.IsNotExist(err), "one broker by default: setup makes no other's credentials")
	client, err := os.ReadFile(filepath.Join(f.clusterCreds, "client", "client.conf"))
	require.NoError(t, err)
	assert.Contains(t, string(client), strings.Join(f.cluster.BrokerAddresses(), ","), "the cluster's client names every broker")
	for _, u := range f.topo.UserNames() {
		want, err := os.ReadFile(bootstrap.Output{Dir: f.creds}.UserPasswordFile(u))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, f.secret(t, "password", u)), "`setup password %s` does not print its password", u)
	}
	token, err := os.ReadFile(bootstrap.Output{Dir: f.creds}.ProvisioningToken())
	require.NoError(t, err)
	assert.True(t, bytes.Equal(token, f.secret(t, "provisioning-token")), "`setup provisioning-token` does not print the token")

	// demo secrets, on a fresh credentials volume
	saved := f.creds
	f.creds = filepath.Join(b.dir, "credentials-demo")
	f.setup(t, "demo")
	assert.Equal(t, "secret", strings.TrimSpace(string(f.secret(t, "password", "choria"))), "demo passwords are the reference's")
	f.creds = saved

	// archives: installed, owned by uid 1000, recorded
	docroot, err := os.ReadDir(f.doc)
	require.NoError(t, err)
	plugins := b.path(f.storePathNamed(t, "choria-plugins"))
	built, err := os.ReadDir(filepath.Join(plugins, "docroot"))
	require.NoError(t, err)
	require.NotEmpty(t, built)
	for _, a := range built {
		assert.True(t, slices.ContainsFunc(docroot, func(e os.DirEntry) bool { return e.Name() == a.Name() }), "setup did not install %s", a.Name())
		assert.Equal(t, "1000:1000", ownerOf(f.owner, filepath.Join(f.doc, a.Name())), "%s is not the client's to replace", a.Name())
	}
	assert.Equal(t, "1000:1000", ownerOf(f.owner, f.doc), "the client cannot add archives to the docroot")

	// a rebuilt image brings a new archive; a person replaced another
	first, second := filepath.Join(plugins, "docroot", built[0].Name()), filepath.Join(f.doc, built[len(built)-1].Name())
	require.NotEqual(t, filepath.Base(first), filepath.Base(second), "choria-plugins builds one archive only")
	require.NoError(t, os.Chmod(first, 0o644))
	require.NoError(t, os.WriteFile(first, []byte("rebuilt"), 0o644))
	require.NoError(t, os.WriteFile(second, []byte("a person's"), 0o644))
	out, _ := f.setup(t, "random")
	got, _ := os.ReadFile(filepath.Join(f.doc, filepath.Base(first)))
	assert.Equal(t, "rebuilt", string(got), "an archive of an earlier image stays after the image changed")
	got, _ = os.ReadFile(second)
	assert.Equal(t, "a person's", string(got), "setup overwrote an archive a person replaced")
	assert.Contains(t, string(out), "keeping "+second)
	// and the manifest the servers get is signed for this image's archives
	md, err := os.ReadFile(filepath.Join(f.creds, "server", "external-agents.machine_data.json"))
	require.NoError(t, err)
	manifest, err := os.ReadFile(filepath.Join(plugins, "server-plugins.json"))
	require.NoError(t, err)
	var data struct {
		Spec struct {
			Plugins   []byte `json:"plugins"`
			Signature string `json:"signature"`
		} `json:"spec"`
	}
	require.NoError(t, json.Unmarshal(md, &data))
	assert.Equal(t, string(manifest), string(data.Spec.Plugins))
	assert.NotEmpty(t, data.Spec.Signature)
}

// storePathNamed is the stand-in of that name, a version aside.
func (f *composeFixture) storePathNamed(t *testing.T, name string) string {
	t.Helper()
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(-[0-9][^-]*)?$`)
	for p, si := range f.ev.StandIns {
		if re.MatchString(si.Name) {
			return p
		}
	}
	t.Fatalf("no stand-in named %s", name)
	return ""
}

// checkServerImage: a server holds, before provisioning, what the
// namespace lab gives it: the facts machine (gathering with choria-facts),
// the external agents machine, whose signed manifest its start installs
// from the compose mount, and the requests agent's policy; it starts
// choria by absolute path. The NATS host's settings are the lab's too.
func (f *composeFixture) checkServerImage(t *testing.T) {
	b := f.b.with(t)
	img := b.image(topology.RoleServer)
	tm, err := f.topo.Timing(topology.TimingsLab)
	require.NoError(t, err)
	server := f.topo.Roles[topology.RoleServer]
	etc := img.file(server.ConfigDir)

	// gathering at the lab's interval into the file the provisioned
	// configuration reads facts from
	require.NotEmpty(t, f.provisioned["plugin.yaml"])
	wantFacts, err := machines.RenderFacts(machines.FactsOptions{Interval: tm.FactsInterval.Duration, Output: f.provisioned["plugin.yaml"]})
	require.NoError(t, err)
	sameFile(t, filepath.Join(etc, "machine/facts/machine.yaml"), wantFacts)
	wantEA, err := machines.RenderExternalAgents(machines.ExternalAgentsOptions{
		PluginsDirectory: filepath.Join(server.StateDir, "plugins", "mcollective", "agent"),
		Interval:         tm.PluginsInterval.Duration, ManageInterval: tm.PluginsManageInterval.Duration,
	})
	require.NoError(t, err)
	sameFile(t, filepath.Join(etc, "machine/external_agents/machine.yaml"), wantEA)
	for _, p := range []string{"machine/facts/machine.yaml", "machine/facts/gather", "machine/external_agents/machine.yaml", "plugin.d/requests"} {
		fi, err := os.Lstat(filepath.Join(etc, p))
		if assert.NoError(t, err, p) {
			assert.True(t, fi.Mode().IsRegular(), "%s is a link into the store, not a file of the image", p)
		}
	}
	gather, err := os.ReadFile(filepath.Join(etc, "machine/facts/gather"))
	require.NoError(t, err)
	facts, err := os.ReadFile(filepath.Join(b.ours(), "bin", "choria-facts"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(facts, gather), "the facts machine's gather is not choria-facts")
	policy, err := os.ReadFile(filepath.Join(etc, "plugin.d/requests"))
	require.NoError(t, err)
	assertLabRequestsPolicy(t, policy)
	// where the provisioned server writes its status and executor spool,
	// and the agents directory the external agents machine fills
	for _, d := range []string{
		filepath.Dir(f.provisioned["plugin.choria.status_file_path"]),
		filepath.Dir(f.provisioned["plugin.choria.executor.spool"]),
		filepath.Join(f.provisioned["libdir"], "mcollective/agent"),
	} {
		fi, err := os.Stat(img.file(d))
		assert.True(t, err == nil && fi.IsDir(), "the server image lacks %s", d)
	}

	// its start: the signed manifest from the mount, then choria
	entry := f.ev.Images[topology.RoleServer].Config.Entrypoint
	require.Len(t, entry, 1)
	start, err := os.ReadFile(img.file(entry[0]))
	require.NoError(t, err)
	var mount string
	for _, m := range f.c.Services[f.topo.ServerName(1)].mounts("credentials") {
		if m.Volume.Subpath == "server/external-agents.machine_data.json" {
			mount = m.Target
		}
	}
	require.NotEmpty(t, mount, "the servers do not mount the external agents machine's manifest")
	require.Contains(t, string(start), mount, "the server's start does not read the manifest where compose mounts it")
	stub := filepath.Join(b.dir, "choria-stub")
	b.write(stub, "#!/bin/sh\necho \"$0 $*\"\n", 0o755)
	run := strings.NewReplacer(mount, filepath.Join(f.creds, "server", "external-agents.machine_data.json"),
		server.ConfigDir+"/", etc+"/", "exec /bin/choria ", "exec "+stub+" ").Replace(string(start))
	out := b.run("the server's start", run, "")
	assert.Equal(t, stub+" server run --config "+etc+"/server.conf\n", string(out))
	installed, err := os.ReadFile(filepath.Join(etc, "machine/external_agents/machine_data.json"))
	require.NoError(t, err)
	signed, err := os.ReadFile(filepath.Join(f.creds, "server", "external-agents.machine_data.json"))
	require.NoError(t, err)
	assert.Equal(t, string(signed), string(installed))
	assert.True(t, img.has("/bin/choria"), "the server re-executes /bin/choria")

	// nats-server's settings
	nats := b.image(topology.RoleNATS)
	conf, err := os.ReadFile(nats.file(f.ev.Images[topology.RoleNATS].Config.Entrypoint[2]))
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(conf, &got))
	assert.Equal(t, roundTrip(t, lab.NATSSettings(f.topo, f.topo.MustHost(topology.RoleNATS))), got)
}

// checkTour: every step of walkthrough/scenario.json finds, on the
// service of its host, sh (the interpreters run `sh -c`) and every
// program it calls; the client's home is the reference's (~/plugins in the
// image, ~/credentials with the plugin signer, ~/htdocs the plugins
// volume, all the image user's).
func (f *composeFixture) checkTour(t *testing.T) {
	b := f.b.with(t)
	scen, err := walkthrough.Default()
	require.NoError(t, err)
	vars := walkthrough.TopologyVars(f.topo)
	var names, fqdns []string
	for i := 1; i <= f.topo.Servers.Count; i++ {
		names = append(names, f.topo.ServerName(i))
		fqdns = append(fqdns, f.topo.FQDN(f.topo.ServerName(i)))
	}
	vars["servers.count"] = strconv.Itoa(len(names))
	vars["servers.names"], vars["servers.fqdns"] = strings.Join(names, " "), strings.Join(fqdns, " ")
	vars["servers.first"], vars["servers.first.fqdn"] = names[0], fqdns[0]
	vars["provisioning.token"], vars["issuer.public_key"] = "token", "key"
	for _, u := range f.topo.UserNames() {
		vars["password."+u] = "password"
	}
	clientCommands := ""
	for _, st := range scen.Steps {
		items := []string{""}
		if st.Each == walkthrough.EachServers {
			items = names
		}
		for _, item := range items {
			v := walkthrough.Vars{"item": item, "item.fqdn": f.topo.FQDN(item)}
			for k, val := range vars {
				v[k] = val
			}
			for name := range st.Capture {
				n, err := v.Expand(name)
				require.NoError(t, err)
				vars[n] = "1"
			}
			host, err := v.Expand(st.Host)
			require.NoError(t, err)
			s, ok := f.c.Services[host]
			if !assert.True(t, ok, "step %s runs on %s, which compose does not run", st.Name, host) {
				continue
			}
			img := b.image(s.role())
			need := []string{"sh"}
			if st.Login != nil {
				need = append(need, "choria")
			} else {
				cmd, err := v.Expand(st.Command)
				require.NoError(t, err)
				progs, err := programsOf(cmd)
				require.NoError(t, err, "step %s: %s", st.Name, cmd)
				need = append(need, progs...)
				if host == "client" {
					clientCommands += cmd + "\n"
				}
			}
			for _, p := range need {
				assert.True(t, img.has(p), "step %s calls %s on %s, whose image (%s) lacks it", st.Name, p, host, s.role())
			}
		}
	}

	client := f.c.Services["client"]
	img := b.image(client.role())
	uid := f.ev.Images[client.role()].Config.User
	home, err := img.passwdHome(uid)
	require.NoError(t, err)
	owner := uid + ":" + uid
	// ~/plugins/check_choria, the source of the archive the tour builds
	cc := filepath.Join(home, "plugins/check_choria/machine.yaml")
	assert.Contains(t, clientCommands, "plugins/check_choria")
	fi, err := os.Lstat(img.file(cc))
	if assert.NoError(t, err, "the client image has no %s", cc) {
		assert.True(t, fi.Mode().IsRegular(), "%s is a link into the store: tar would archive the link", cc)
		assert.Equal(t, owner, ownerOf(img.owners, strings.TrimPrefix(cc, "/")), "%s is not the client's", cc)
		tm, err := f.topo.Timing(topology.TimingsLab)
		require.NoError(t, err)
		want, err := machines.RenderCheckChoria(tm.ScoutCheckInterval.Duration)
		require.NoError(t, err)
		sameFile(t, img.file(cc), want)
	}
	assert.Equal(t, owner, ownerOf(img.owners, strings.TrimPrefix(home, "/")), "the client's home is not the client's")
	assert.Equal(t, home, f.ev.Images[client.role()].Config.WorkingDir)
	// ~/credentials/plugin-signer.seed and ~/htdocs
	assert.Contains(t, clientCommands, "credentials/plugin-signer.seed")
	assert.Contains(t, clientCommands, "htdocs/")
	var creds, htdocs bool
	for _, m := range client.Volumes {
		switch {
		case m.Target == home+"/credentials" && m.Source == "credentials":
			_, err := os.Stat(filepath.Join(f.creds, m.Volume.Subpath, "plugin-signer.seed"))
			creds = err == nil
		case m.Target == home+"/htdocs" && m.Source == "plugins" && !m.ReadOnly:
			htdocs = true
		}
	}
	assert.True(t, creds, "the client has no ~/credentials with the plugin signer")
	assert.True(t, htdocs, "the client has no writable ~/htdocs on the plugins volume")

	// the aaa host's audit log, read by the image's user
	aaa := b.image(topology.RoleAAA)
	log := f.topo.Roles[topology.RoleAAA].StateDir
	assert.True(t, strings.HasPrefix(bootstrap.AAAAuditLog(f.topo), log+"/"))
	aaaUID := f.ev.Images[topology.RoleAAA].Config.User
	assert.Equal(t, aaaUID+":"+aaaUID, ownerOf(aaa.owners, strings.TrimPrefix(log, "/")), "aaasvc cannot write its audit log")
}

// checkFQDNs: every topology host a service's configuration names (its
// credentials directory, JWT claims and signed manifests decoded; the
// files of its image; for servers, what the provisioner writes into their
// configuration) is an alias on a network the service is on.
func (f *composeFixture) checkFQDNs(t *testing.T) {
	b := f.b.with(t)
	domain := regexp.QuoteMeta("." + f.topo.Domain)
	nameRE := regexp.MustCompile(`[a-z0-9][a-z0-9-]*(?:\.[a-z0-9][a-z0-9-]*)*` + domain + `\b`)
	known := map[string]bool{}
	for _, h := range f.cluster.AllHosts() {
		known[f.topo.FQDN(h.Name)] = true
	}
	provisioned, err := json.Marshal(f.provisioned)
	require.NoError(t, err)

	checked := 0
	for name, s := range f.c.Services {
		if s.NetworkMode == "none" {
			continue
		}
		var texts [][]byte
		for _, m := range s.mounts("credentials") {
			texts = append(texts, readTree(t, filepath.Join(f.credsOf(s), m.Volume.Subpath))...)
		}
		texts = append(texts, regularFiles(t, b.image(s.role()).dir)...)
		if s.role() == topology.RoleServer {
			texts = append(texts, provisioned)
		}
		named := map[string]bool{}
		for _, text := range texts {
			for _, n := range namesIn(text, nameRE) {
				named[n] = true
			}
		}
		self := containerFQDN(s)
		for n := range named {
			if n == self {
				continue
			}
			checked++
			assert.True(t, known[n], "%s's configuration names %s, no host of the topology", name, n)
			assert.True(t, f.reaches(s, n), "%s's configuration names %s, which is no alias on a network %s is on", name, n, name)
		}
	}
	assert.Positive(t, checked)
}

// reaches tells whether fqdn is an alias of a service on one of s's networks.
func (f *composeFixture) reaches(s composeService, fqdn string) bool {
	for net := range s.Networks {
		for _, o := range f.c.Services {
			if slices.Contains(o.Networks[net].Aliases, fqdn) {
				return true
			}
		}
	}
	return false
}

// namesIn finds names in text, in JWT claims and in base64 JSON strings.
func namesIn(text []byte, re *regexp.Regexp) []string {
	names := re.FindAllString(string(text), -1)
	for _, jwt := range regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+`).FindAllSubmatch(text, -1) {
		if claims, err := base64.RawURLEncoding.DecodeString(string(jwt[1])); err == nil {
			names = append(names, namesIn(claims, re)...)
		}
	}
	var v any
	if json.Unmarshal(text, &v) == nil {
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				for _, e := range x {
					walk(e)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			case string:
				if b, err := base64.StdEncoding.DecodeString(x); err == nil && json.Valid(b) {
					names = append(names, namesIn(b, re)...)
				}
			}
		}
		walk(v)
	}
	return names
}

// readTree reads a file, or every file under a directory.
func readTree(t *testing.T, path string) [][]byte {
	t.Helper()
	var out [][]byte
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out = append(out, b)
		return err
	})
	require.NoError(t, err)
	return out
}

// regularFiles reads the text files an image holds of its own (not its
// links into packages).
func regularFiles(t *testing.T, root string) [][]byte {
	t.Helper()
	var out [][]byte
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && !bytes.Contains(b, []byte{0}) {
			out = append(out, b)
		}
		return err
	})
	require.NoError(t, err)
	return out
}

// checkSmall: each image holds what its role runs: no image holds all of
// our programs (choria-reference, neither in its contents nor referred to
// by a file), and every package with programs an image holds provides one
// that the image runs (its entry point, its healthcheck, its scripts, the
// tour's steps on its hosts).
func (f *composeFixture) checkSmall(t *testing.T) {
	b := f.b.with(t)
	ours := f.storePathNamed(t, "choria-reference")
	used := f.usedPrograms(t)
	for role, img := range f.ev.Images {
		root := b.image(role)
		assert.NotContains(t, img.Contents, ours, "image %s holds all of our programs", role)
		for _, c := range img.Contents {
			si := f.ev.StandIns[c]
			dir := b.path(c)
			for _, text := range regularFiles(t, dir) {
				assert.False(t, bytes.Contains(text, []byte(ours)) || bytes.Contains(text, []byte(b.ours())), "image %s: %s refers to all of our programs", role, si.Name)
			}
			progs, _ := filepath.Glob(filepath.Join(dir, "bin", "*"))
			if len(progs) == 0 {
				continue
			}
			var names []string
			for _, p := range progs {
				names = append(names, filepath.Base(p))
			}
			assert.True(t, slices.ContainsFunc(names, func(n string) bool { return used[role][n] }),
				"image %s holds %s (%s), none of which it runs", role, si.Name, strings.Join(names, " "))
		}
		for _, text := range regularFiles(t, root.dir) {
			assert.False(t, bytes.Contains(text, []byte(ours)), "image %s: a file refers to all of our programs", role)
		}
	}
}

// usedPrograms are, per image, the programs something in or around it
// runs.
func (f *composeFixture) usedPrograms(t *testing.T) map[string]map[string]bool {
	t.Helper()
	b := f.b.with(t)
	used := map[string]map[string]bool{}
	add := func(role string, progs ...string) {
		if used[role] == nil {
			used[role] = map[string]bool{}
		}
		for _, p := range progs {
			used[role][filepath.Base(p)] = true
		}
	}
	for role, img := range f.ev.Images {
		add(role, img.Config.Entrypoint[0])
		root := b.image(role)
		for _, c := range img.Contents {
			if si := f.ev.StandIns[c]; si.Kind == "bin" {
				text, err := os.ReadFile(filepath.Join(b.path(c), "bin", si.Name))
				require.NoError(t, err)
				progs, err := programsOf(string(text))
				require.NoError(t, err, si.Name)
				add(role, progs...)
				for _, p := range progs {
					if filepath.IsAbs(p) && !strings.HasPrefix(p, b.dir) {
						assert.True(t, root.has(p), "%s runs %s, which image %s lacks", si.Name, p, role)
					}
				}
			}
		}
	}
	// the provisioner runs the helper choria-bootstrap names
	var prov struct {
		Helper string `yaml:"helper"`
	}
	conf, err := os.ReadFile(bootstrap.Output{Dir: f.creds}.ProvisionerConfig())
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(conf, &prov))
	helper := strings.Fields(prov.Helper)
	require.NotEmpty(t, helper, "provisioner.yaml names no helper")
	add(topology.RoleProvisioner, helper[0])
	assert.True(t, b.image(topology.RoleProvisioner).has(helper[0]), "the provisioner image lacks its helper %s", helper[0])
	for _, s := range f.c.Services {
		if s.Healthcheck != nil {
			add(s.role(), healthcheckPrograms(t, s.Healthcheck.Test)...)
		}
	}
	scen, err := walkthrough.Default()
	require.NoError(t, err)
	for _, st := range scen.Steps {
		role := topology.RoleServer
		if !strings.Contains(st.Host, "$") {
			role = f.c.Services[st.Host].role()
		}
		add(role, "sh", "choria")
		if st.Command != "" {
			progs, err := programsOf(placeholderVars(st.Command))
			require.NoError(t, err)
			add(role, progs...)
		}
	}
	return used
}

// placeholderVars stands a word in for every scenario variable.
func placeholderVars(s string) string {
	return regexp.MustCompile(`\$\{[^${}]*(\$\{[^{}]*\})?[^{}]*\}`).ReplaceAllString(s, "x")
}

// checkInstructions: what the compose file's comments and the README tell
// a person to run: `run` only for setup (the others hold fixed addresses
// that a second container would ask for), and the README walks through
// loading, starting, a password, logging in and the tour.
func (f *composeFixture) checkInstructions(t *testing.T) {
	root := testenv.ModuleRoot(t)
	readme := readFile(t, root, "README.md")
	start := strings.Index(readme, "### OCI images and compose")
	require.GreaterOrEqual(t, start, 0, "README has no section on the images and compose")
	section := readme[start:]
	if end := strings.Index(section[4:], "\n### "); end >= 0 {
		section = section[:end+4]
	}
	runRE := regexp.MustCompile(`docker compose(?: -f \S+)*(?: --\S+)* run (?:--?\S+ )*([a-z0-9-]+)`)
	for where, text := range map[string]string{composePath: readFile(t, root, composePath), "README.md": section} {
		for _, m := range runRE.FindAllStringSubmatch(text, -1) {
			s, ok := f.c.Services[m[1]]
			if assert.True(t, ok, "%s: %q runs no service", where, m[0]) {
				assert.Empty(t, s.fixed(), "%s tells a person to %q, whose fixed address the running %s holds; use exec", where, m[0], m[1])
			}
		}
	}
	for _, want := range []string{"choria-lab-load-images", "up -d --wait", "setup password", "provisioning-token",
		"exec client", "choria login", "--profile scale", "not verified"} {
		assert.True(t, strings.Contains(strings.ToLower(section), strings.ToLower(want)), "the README's compose section does not say %q", want)
	}
	var roles []string
	for r := range f.ev.Images {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		assert.Contains(t, section, "`"+r+"`", "the README's compose section does not name the image %s", r)
	}
}
