// Package topology reads and validates the lab's single source of truth:
// networks, hosts, roles, ports, users, streams, validity periods and timings.
package topology

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/choria-io/tokens"

	"github.com/reproducible-choria/deployment/internal/duration"
)

//go:embed topology.json
var embedded []byte

// Role names. Every host has exactly one.
const (
	RoleBroker      = "broker"
	RoleProvisioner = "provisioner"
	RoleAAA         = "aaa"
	RoleReplicator  = "replicator"
	RoleNATS        = "nats"
	RolePlugins     = "plugins"
	RoleClient      = "client"
	RoleServer      = "server"
)

// Roles lists every role in start-up order.
func Roles() []string {
	return []string{RoleBroker, RoleNATS, RolePlugins, RoleProvisioner, RoleAAA, RoleReplicator, RoleClient, RoleServer}
}

// Timing profile names.
const (
	TimingsLab       = "lab"
	TimingsReference = "reference"
)

// Topology is the whole lab description.
type Topology struct {
	Domain       string             `json:"domain"`
	Organisation string             `json:"organisation"`
	Collective   string             `json:"collective"`
	IssuerName   string             `json:"issuer_name"`
	Networks     []Network          `json:"networks"`
	Brokers      BrokerPool         `json:"brokers"`
	Hosts        []Host             `json:"hosts"`
	Servers      ServerPool         `json:"servers"`
	Roles        map[string]Role    `json:"roles"`
	ServerPaths  ServerPaths        `json:"server_paths"`
	Ports        Ports              `json:"ports"`
	Users        []User             `json:"users"`
	Streams      Streams            `json:"streams"`
	Validity     Validity           `json:"validity"`
	Timings      map[string]Timings `json:"timings"`
}

// Network is one of the lab's networks.
type Network struct {
	Name   string       `json:"name"`
	Subnet netip.Prefix `json:"subnet"`
}

// BrokerPool lists the brokers a deployment may run: the first Count of
// Hosts run, clustered when there are more than one. Hosts, in order, are
// the cluster profile's brokers; their role is the broker's.
type BrokerPool struct {
	Count int    `json:"count"`
	Hosts []Host `json:"hosts"`
}

// MaxBrokers bounds a cluster: every stream is replicated once per broker
// (go-choria gives its system streams as many replicas as a cluster has
// peers), and JetStream keeps at most five replicas.
const MaxBrokers = 5

// Host is a fixed host; servers are generated from ServerPool.
type Host struct {
	Name      string                `json:"name"`
	Role      string                `json:"role"`
	Addresses map[string]netip.Addr `json:"addresses"`
}

// ServerPool describes the managed servers, numbered from 1.
type ServerPool struct {
	NamePrefix   string     `json:"name_prefix"`
	Count        int        `json:"count"`
	Network      string     `json:"network"`
	FirstAddress netip.Addr `json:"first_address"`
}

// Role holds the absolute paths a role sees on its host, identical in every backend.
type Role struct {
	ConfigDir string `json:"config_dir"`
	StateDir  string `json:"state_dir"`
	// User is the account the role's service runs as: the NixOS module's
	// default user, which the namespace lab uses too.
	User string `json:"user"`
	// GoRuntime tunes the Go runtime of the role's service through its
	// environment (GOGC, GOMEMLIMIT, GOMAXPROCS): the lab's process, the
	// NixOS unit and the image get the same.
	GoRuntime map[string]string `json:"go_runtime,omitempty"`
}

// GoRuntimeEnv is the role's Go runtime environment as NAME=value, sorted.
func (r Role) GoRuntimeEnv() []string {
	var env []string
	for _, k := range slices.Sorted(maps.Keys(r.GoRuntime)) {
		env = append(env, k+"="+r.GoRuntime[k])
	}
	return env
}

// goRuntimeValues are the variables go_runtime may set, each with the
// syntax the Go runtime accepts for it: a bad value would be ignored or
// stop the program at start, far from the topology that set it.
var goRuntimeValues = map[string]*regexp.Regexp{
	"GOGC":       regexp.MustCompile(`^(off|[0-9]+)$`),
	"GOMEMLIMIT": regexp.MustCompile(`^(off|[0-9]+(B|KiB|MiB|GiB|TiB)?)$`),
	"GOMAXPROCS": regexp.MustCompile(`^[1-9][0-9]*$`),
}

func validateGoRuntime(role string, env map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(env)) {
		re, ok := goRuntimeValues[k]
		if !ok {
			return fmt.Errorf("role %q: go_runtime.%s is not a Go runtime setting (known: %s)", role, k, strings.Join(slices.Sorted(maps.Keys(goRuntimeValues)), ", "))
		}
		if !re.MatchString(env[k]) {
			return fmt.Errorf("role %q: go_runtime.%s %q is not a value Go accepts (%s)", role, k, env[k], re)
		}
	}
	return nil
}

// ServerPaths are where a server keeps what its configuration names and
// the machines, the lab and the tour read.
type ServerPaths struct {
	// PluginsDir is the libdir: agents go in its mcollective/agent (AgentDir).
	PluginsDir string `json:"plugins_dir"`
	// MachineDir holds the autonomous agents' machines.
	MachineDir string `json:"machine_dir"`
	// FactsFile is the facts the facts machine writes and the server reads.
	FactsFile string `json:"facts_file"`
	// StatusFile is the status file the server writes, for `choria tool status`.
	StatusFile string `json:"status_file"`
	// SubmissionSpool is where Choria Submit spools messages.
	SubmissionSpool string `json:"submission_spool"`
}

// AgentDir is where external agents are deployed: Choria looks for them
// in the libdir's mcollective/agent.
func (p ServerPaths) AgentDir() string { return path.Join(p.PluginsDir, "mcollective", "agent") }

// Ports used by the lab's services.
type Ports struct {
	BrokerClient       int `json:"broker_client"`
	BrokerCluster      int `json:"broker_cluster"`
	BrokerStats        int `json:"broker_stats"`
	AAALogin           int `json:"aaa_login"`
	AAAMonitor         int `json:"aaa_monitor"`
	ReplicatorMonitor  int `json:"replicator_monitor"`
	ProvisionerMonitor int `json:"provisioner_monitor"`
	NATSClient         int `json:"nats_client"`
	NATSMonitor        int `json:"nats_monitor"`
	PluginsHTTP        int `json:"plugins_http"`
}

// User is an AAA service login.
type User struct {
	Name              string          `json:"name"`
	BrokerPermissions map[string]bool `json:"broker_permissions"`
	OPAPolicy         string          `json:"opa_policy,omitempty"`
}

// ClientPermissions decodes the user's broker permissions with the token
// library's own field names, so a misspelt permission is an error, not a no-op.
func (u User) ClientPermissions() (*tokens.ClientPermissions, error) {
	b, err := json.Marshal(u.BrokerPermissions)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p tokens.ClientPermissions
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("user %q broker_permissions: %w", u.Name, err)
	}
	return &p, nil
}

// Stream describes a Choria Streams stream.
type Stream struct {
	Name     string   `json:"name"`
	Subjects []string `json:"subjects"`
}

// Streams names the streams, buckets and subjects the deployment uses.
type Streams struct {
	Registration   Stream `json:"registration"`
	Submission     Stream `json:"submission"`
	PluginsBucket  string `json:"plugins_bucket"`
	PluginsKey     string `json:"plugins_key"`
	ReplicatorName string `json:"replicator_name"`
	MonitorSubject string `json:"monitor_subject"`
}

// Validity periods of issued credentials.
type Validity struct {
	Signers           duration.Duration `json:"signers"`
	BrokerToken       duration.Duration `json:"broker_token"`
	ProvisioningToken duration.Duration `json:"provisioning_token"`
	ServerToken       duration.Duration `json:"server_token"`
	TLSCertificate    duration.Duration `json:"tls_certificate"`
	UserLogin         duration.Duration `json:"user_login"`
	MaxSigning        duration.Duration `json:"max_signing"`
}

// Timings are the intervals of one timing profile.
type Timings struct {
	RegistrationInterval  duration.Duration `json:"registration_interval"`
	StatusInterval        duration.Duration `json:"status_interval"`
	FactsInterval         duration.Duration `json:"facts_interval"`
	PluginsInterval       duration.Duration `json:"plugins_interval"`
	PluginsManageInterval duration.Duration `json:"plugins_manage_interval"`
	PluginsPollInterval   duration.Duration `json:"plugins_poll_interval"`
	// PluginsCheckInterval is how often a server's plugin manager acts on
	// the specification it polled (installs, removes, checks autonomous
	// agents), at least 10s: a deployment lands within poll plus check
	// interval.
	PluginsCheckInterval duration.Duration `json:"plugins_check_interval"`
	ScoutCheckInterval   duration.Duration `json:"scout_check_interval"`
	ProvisionerInterval  duration.Duration `json:"provisioner_interval"`
	ReplicatorHeartbeat  duration.Duration `json:"replicator_heartbeat"`
	// PerServer makes intervals grow with the fleet: each is at least
	// PerServer's value times the servers.count, rounded up to a whole
	// second, so the fleet's load on the broker, the provisioner and the
	// machine stays bounded as it grows (Topology.Timing applies it).
	PerServer *Timings `json:"per_server,omitempty"`
}

// forFleet applies PerServer to a fleet of n servers.
func (tm Timings) forFleet(n int) Timings {
	per := tm.PerServer
	tm.PerServer = nil
	if per == nil {
		return tm
	}
	perFields := per.Intervals()
	for i, f := range tm.Intervals() {
		grown := time.Duration(n) * perFields[i].Duration.Duration
		if grown > f.Duration.Duration {
			f.Duration.Duration = (grown + time.Second - 1).Truncate(time.Second)
		}
	}
	return tm
}

// Interval is one interval of a timing profile, named by its JSON key.
type Interval struct {
	Name     string
	Duration *duration.Duration
}

// Intervals are the profile's intervals, in declaration order.
func (tm *Timings) Intervals() []Interval {
	return []Interval{
		{"registration_interval", &tm.RegistrationInterval}, {"status_interval", &tm.StatusInterval},
		{"facts_interval", &tm.FactsInterval}, {"plugins_interval", &tm.PluginsInterval},
		{"plugins_manage_interval", &tm.PluginsManageInterval}, {"plugins_poll_interval", &tm.PluginsPollInterval},
		{"plugins_check_interval", &tm.PluginsCheckInterval}, {"scout_check_interval", &tm.ScoutCheckInterval},
		{"provisioner_interval", &tm.ProvisionerInterval}, {"replicator_heartbeat", &tm.ReplicatorHeartbeat},
	}
}

// Default returns the repository's topology.
func Default() (*Topology, error) {
	return Parse(embedded, "built-in topology")
}

// MustDefault is Default for the defaults of command-line flags: the
// built-in topology is validated by this package's tests, so an error is
// a broken build.
func MustDefault() *Topology {
	t, err := Default()
	if err != nil {
		panic(err)
	}
	return t
}

// DefaultJSON returns the repository's topology file as shipped.
func DefaultJSON() []byte { return bytes.Clone(embedded) }

// LoadOrDefault reads the topology file at path, or the built-in topology
// when path is empty.
func LoadOrDefault(path string) (*Topology, error) {
	if path == "" {
		return Default()
	}
	return Load(path)
}

// Load reads and validates a topology file.
func Load(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading topology: %w", err)
	}
	return Parse(b, path)
}

// Parse decodes and validates topology JSON; name is used in errors.
func Parse(b []byte, name string) (*Topology, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var t Topology
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("topology %s: %w", name, err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("topology %s: %w", name, err)
	}
	return &t, nil
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// IsDNSLabel tells whether s is a lower-case DNS label: letters, digits and
// inner hyphens, at most 63 of them.
func IsDNSLabel(s string) bool { return dnsLabel.MatchString(s) }

// LabRange is the address block reserved for benchmarking labs (RFC 2544),
// the only one lab networks may use: keeping every lab address inside it
// means the lab can never shadow a real network.
var LabRange = netip.MustParsePrefix("198.18.0.0/15")

// InLabRange tells whether the IPv4 prefix p lies inside LabRange.
func InLabRange(p netip.Prefix) bool {
	return p.Addr().Is4() && p.Bits() >= LabRange.Bits() && LabRange.Contains(p.Addr())
}

// userRE is a user name NixOS accepts (users-groups.nix: at most 31 characters).
var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,30}$`)

// Validate checks the topology for consistency.
func (t *Topology) Validate() error {
	for _, l := range strings.Split(t.Domain, ".") {
		if !IsDNSLabel(l) {
			return fmt.Errorf("domain %q is not a valid DNS name", t.Domain)
		}
	}
	for field, v := range map[string]string{"organisation": t.Organisation, "collective": t.Collective, "issuer_name": t.IssuerName} {
		if !IsDNSLabel(v) {
			return fmt.Errorf("%s %q must be a lower-case name", field, v)
		}
	}

	nets := map[string]Network{}
	for _, n := range t.Networks {
		if !n.Subnet.IsValid() {
			return fmt.Errorf("network %q has no subnet", n.Name)
		}
		if _, dup := nets[n.Name]; dup {
			return fmt.Errorf("network %q is declared twice", n.Name)
		}
		if !InLabRange(n.Subnet) {
			return fmt.Errorf("network %q subnet %s is outside the lab range %s", n.Name, n.Subnet, LabRange)
		}
		for _, o := range nets {
			if o.Subnet.Overlaps(n.Subnet) {
				return fmt.Errorf("networks %q and %q overlap", o.Name, n.Name)
			}
		}
		nets[n.Name] = n
	}
	if len(nets) == 0 {
		return fmt.Errorf("no networks")
	}

	for _, r := range Roles() {
		paths, ok := t.Roles[r]
		if !ok {
			return fmt.Errorf("role %q has no paths in roles", r)
		}
		if !strings.HasPrefix(paths.ConfigDir, "/") || !strings.HasPrefix(paths.StateDir, "/") {
			return fmt.Errorf("role %q: config_dir and state_dir must be absolute paths", r)
		}
		if !userRE.MatchString(paths.User) {
			return fmt.Errorf("role %q: user %q is not a user name (lower case, at most 31 characters)", r, paths.User)
		}
		if err := validateGoRuntime(r, paths.GoRuntime); err != nil {
			return err
		}
	}
	for name, p := range map[string]string{
		"plugins_dir": t.ServerPaths.PluginsDir, "machine_dir": t.ServerPaths.MachineDir, "facts_file": t.ServerPaths.FactsFile,
		"status_file": t.ServerPaths.StatusFile, "submission_spool": t.ServerPaths.SubmissionSpool,
	} {
		if !path.IsAbs(p) || path.Clean(p) != p {
			return fmt.Errorf("server_paths.%s %q must be a clean absolute path", name, p)
		}
	}
	for r := range t.Roles {
		if !isRole(r) {
			return fmt.Errorf("unknown role %q in roles (known: %s)", r, strings.Join(Roles(), ", "))
		}
	}

	// before any server is generated: a huge count would take the
	// machine's memory and time (found by FuzzParse)
	if err := t.Servers.fits(nets); err != nil {
		return err
	}

	if err := t.Brokers.validate(); err != nil {
		return err
	}

	seenAddr := map[netip.Addr]string{}
	seenName := map[string]bool{}
	roleCount := map[string]int{}
	// every broker listed, running or not: a larger count must not clash
	for _, h := range append(t.allBrokers(), t.AllHosts()[t.Brokers.Count:]...) {
		if !IsDNSLabel(h.Name) {
			return fmt.Errorf("host name %q is not a valid DNS label", h.Name)
		}
		if seenName[h.Name] {
			return fmt.Errorf("host %q is declared twice", h.Name)
		}
		seenName[h.Name] = true
		if !isRole(h.Role) {
			return fmt.Errorf("host %q has unknown role %q (known: %s)", h.Name, h.Role, strings.Join(Roles(), ", "))
		}
		roleCount[h.Role]++
		if len(h.Addresses) == 0 {
			return fmt.Errorf("host %q is on no network", h.Name)
		}
		for net, a := range h.Addresses {
			n, ok := nets[net]
			if !ok {
				return fmt.Errorf("host %q is on unknown network %q", h.Name, net)
			}
			if !n.Subnet.Contains(a) || a == n.Subnet.Masked().Addr() {
				return fmt.Errorf("host %q address %s is not a host address of network %q (%s)", h.Name, a, net, n.Subnet)
			}
			if other, dup := seenAddr[a]; dup {
				return fmt.Errorf("hosts %q and %q share address %s", other, h.Name, a)
			}
			seenAddr[a] = h.Name
		}
	}
	for _, h := range t.Hosts {
		if h.Role == RoleBroker {
			return fmt.Errorf("host %q: brokers are listed in brokers.hosts, not in hosts", h.Name)
		}
	}
	for _, r := range Roles() {
		if r != RoleServer && r != RoleBroker && roleCount[r] != 1 {
			return fmt.Errorf("role %q must have exactly one host, has %d", r, roleCount[r])
		}
	}
	if err := t.brokersShareANetwork(); err != nil {
		return err
	}
	if t.Servers.Count < 1 {
		return fmt.Errorf("servers.count must be at least 1")
	}

	for _, u := range t.Users {
		if !IsDNSLabel(u.Name) {
			return fmt.Errorf("user name %q must be a lower-case name", u.Name)
		}
		if _, err := u.ClientPermissions(); err != nil {
			return err
		}
	}
	if len(t.Users) == 0 {
		return fmt.Errorf("no users")
	}

	for name, d := range map[string]duration.Duration{
		"validity.signers": t.Validity.Signers, "validity.broker_token": t.Validity.BrokerToken,
		"validity.provisioning_token": t.Validity.ProvisioningToken, "validity.server_token": t.Validity.ServerToken,
		"validity.tls_certificate": t.Validity.TLSCertificate, "validity.user_login": t.Validity.UserLogin,
		"validity.max_signing": t.Validity.MaxSigning,
	} {
		if d.Duration <= 0 {
			return fmt.Errorf("%s must be a positive duration", name)
		}
	}
	if t.Validity.ServerToken.Duration > t.Validity.Signers.Duration {
		// servers' tokens are chained to the provisioner signer, whose
		// expiry caps theirs: a longer setting would silently not apply
		return fmt.Errorf("validity.server_token (%s) cannot exceed validity.signers (%s): the provisioner signer's expiry caps the tokens it issues", t.Validity.ServerToken, t.Validity.Signers)
	}
	if err := t.Ports.validate(); err != nil {
		return err
	}
	if err := t.Streams.validate(); err != nil {
		return err
	}
	for _, p := range []string{TimingsLab, TimingsReference} {
		tm, ok := t.Timings[p]
		if !ok {
			return fmt.Errorf("timings profile %q is missing", p)
		}
		for _, iv := range tm.Intervals() {
			if iv.Duration.Duration <= 0 {
				return fmt.Errorf("timings.%s.%s must be longer than 0", p, iv.Name)
			}
		}
		if tm.ProvisionerInterval.Duration < time.Minute {
			// choria-provisioner refuses anything shorter
			return fmt.Errorf("timings.%s.provisioner_interval must be at least 1m", p)
		}
		if tm.PluginsCheckInterval.Duration < 10*time.Second {
			// it is also the managed machines' archive watchers' interval,
			// which go-choria refuses below 10s
			return fmt.Errorf("timings.%s.plugins_check_interval must be at least 10s", p)
		}
		if tm.PerServer != nil && tm.PerServer.PerServer != nil {
			return fmt.Errorf("timings.%s.per_server cannot hold a per_server of its own", p)
		}
	}
	return nil
}

// validate refuses ports outside 1..65535 and two services of one host
// on one port. Every service but the broker's runs on a host of its own;
// the broker's three ports are its host's.
func (p Ports) validate() error {
	named := []struct {
		name string
		port int
	}{
		{"broker_client", p.BrokerClient}, {"broker_cluster", p.BrokerCluster}, {"broker_stats", p.BrokerStats},
		{"aaa_login", p.AAALogin}, {"aaa_monitor", p.AAAMonitor}, {"replicator_monitor", p.ReplicatorMonitor},
		{"provisioner_monitor", p.ProvisionerMonitor}, {"nats_client", p.NATSClient}, {"nats_monitor", p.NATSMonitor},
		{"plugins_http", p.PluginsHTTP},
	}
	for _, n := range named {
		if n.port < 1 || n.port > 65535 {
			return fmt.Errorf("ports.%s is %d, not a port (1..65535)", n.name, n.port)
		}
	}
	// the ports each host listens on together
	for _, host := range [][]int{
		{0, 1, 2}, // broker
		{3, 4},    // aaa
		{7, 8},    // nats
	} {
		seen := map[int]string{}
		for _, i := range host {
			if other, ok := seen[named[i].port]; ok {
				return fmt.Errorf("ports.%s and ports.%s are both %d on one host", other, named[i].name, named[i].port)
			}
			seen[named[i].port] = named[i].name
		}
	}
	return nil
}

// subjectRE is a NATS subject: dot-separated tokens, * and > wildcards.
var subjectRE = regexp.MustCompile(`^([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*(\.>)?$|^>$`)

// streamNameRE is a JetStream stream or bucket name.
var streamNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (s Streams) validate() error {
	for what, st := range map[string]Stream{"registration": s.Registration, "submission": s.Submission} {
		if !streamNameRE.MatchString(st.Name) {
			return fmt.Errorf("streams.%s.name %q is not a stream name (letters, digits, _ and -)", what, st.Name)
		}
		if len(st.Subjects) == 0 {
			return fmt.Errorf("streams.%s.subjects is empty", what)
		}
		for _, sub := range st.Subjects {
			if !subjectRE.MatchString(sub) {
				return fmt.Errorf("streams.%s.subjects: %q is not a NATS subject", what, sub)
			}
		}
	}
	if !strings.HasSuffix(s.Registration.Subjects[0], ".>") {
		// the broker's registration adapter publishes one subject per node under it
		return fmt.Errorf("streams.registration.subjects[0] %q must end in .>", s.Registration.Subjects[0])
	}
	for what, name := range map[string]string{"plugins_bucket": s.PluginsBucket, "replicator_name": s.ReplicatorName} {
		if !streamNameRE.MatchString(name) {
			return fmt.Errorf("streams.%s %q is not a name (letters, digits, _ and -)", what, name)
		}
	}
	if !subjectRE.MatchString(s.PluginsKey) || strings.ContainsAny(s.PluginsKey, "*>") {
		return fmt.Errorf("streams.plugins_key %q is not a key", s.PluginsKey)
	}
	if !subjectRE.MatchString(s.MonitorSubject) {
		return fmt.Errorf("streams.monitor_subject %q is not a NATS subject", s.MonitorSubject)
	}
	return nil
}

func isRole(r string) bool { return slices.Contains(Roles(), r) }

// FQDN is a host's fully qualified name.
func (t *Topology) FQDN(host string) string { return host + "." + t.Domain }

// ServerName is the host name of server i, counting from 1.
func (t *Topology) ServerName(i int) string { return fmt.Sprintf("%s%d", t.Servers.NamePrefix, i) }

// WithBrokers returns a copy running the first n brokers of brokers.hosts,
// validated.
func (t *Topology) WithBrokers(n int) (*Topology, error) {
	return t.with(func(c *Topology) { c.Brokers.Count = n })
}

// with returns a changed copy, validated.
func (t *Topology) with(change func(*Topology)) (*Topology, error) {
	c := *t
	change(&c)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Cluster returns a copy running every broker brokers.hosts lists: the
// cluster profile.
func (t *Topology) Cluster() (*Topology, error) { return t.WithBrokers(len(t.Brokers.Hosts)) }

// validate refuses a count the list cannot fill and brokers given another role.
func (b BrokerPool) validate() error {
	if b.Count < 1 {
		return fmt.Errorf("brokers.count must be at least 1")
	}
	if b.Count > len(b.Hosts) {
		return fmt.Errorf("brokers.count %d: brokers.hosts lists only %d brokers", b.Count, len(b.Hosts))
	}
	if b.Count > MaxBrokers {
		return fmt.Errorf("brokers.count %d: at most %d brokers, as JetStream replicates a stream at most %d times", b.Count, MaxBrokers, MaxBrokers)
	}
	for _, h := range b.Hosts {
		if h.Role != "" && h.Role != RoleBroker {
			return fmt.Errorf("broker %q has role %q: brokers.hosts are brokers", h.Name, h.Role)
		}
	}
	return nil
}

// brokersShareANetwork: cluster routes run between every two brokers.
func (t *Topology) brokersShareANetwork() error {
	bs := t.BrokerHosts()
	for _, n := range t.NetworkNames() {
		all := true
		for _, b := range bs {
			if _, ok := b.Addresses[n]; !ok {
				all = false
			}
		}
		if all {
			return nil
		}
	}
	return fmt.Errorf("brokers %s share no network: a cluster's routes need one", strings.Join(hostNames(bs), ", "))
}

func hostNames(hs []Host) []string {
	names := make([]string, 0, len(hs))
	for _, h := range hs {
		names = append(names, h.Name)
	}
	return names
}

// allBrokers is every broker listed, as hosts with their role.
func (t *Topology) allBrokers() []Host {
	out := make([]Host, 0, len(t.Brokers.Hosts))
	for _, h := range t.Brokers.Hosts {
		h.Role = RoleBroker
		out = append(out, h)
	}
	return out
}

// BrokerHosts are the brokers that run, in order.
func (t *Topology) BrokerHosts() []Host {
	return t.allBrokers()[:min(t.Brokers.Count, len(t.Brokers.Hosts))]
}

// Clustered tells whether more than one broker runs.
func (t *Topology) Clustered() bool { return t.Brokers.Count > 1 }

// StreamReplicas is the replica count of every stream and bucket: one per
// broker, so three on a cluster of three, which survives the loss of one.
func (t *Topology) StreamReplicas() int { return t.Brokers.Count }

// BrokerAddresses are the brokers' client addresses (host:port), in order.
func (t *Topology) BrokerAddresses() []string {
	var out []string
	for _, b := range t.BrokerHosts() {
		out = append(out, fmt.Sprintf("%s:%d", t.FQDN(b.Name), t.Ports.BrokerClient))
	}
	return out
}

// BrokerURLs are the NATS URLs of the brokers, in order: every program
// that connects to the broker lists them all and fails over by itself.
func (t *Topology) BrokerURLs() []string {
	var out []string
	for _, a := range t.BrokerAddresses() {
		out = append(out, "nats://"+a)
	}
	return out
}

// BrokerPeers are the cluster routes every broker is given: each broker's
// cluster port, itself included (NATS ignores a route to itself), so all
// brokers share one list. Empty for a single broker.
func (t *Topology) BrokerPeers() []string {
	if !t.Clustered() {
		return nil
	}
	var out []string
	for _, b := range t.BrokerHosts() {
		out = append(out, fmt.Sprintf("nats://%s:%d", t.FQDN(b.Name), t.Ports.BrokerCluster))
	}
	return out
}

// WithServers returns a copy with a different server count, validated.
func (t *Topology) WithServers(n int) (*Topology, error) {
	return t.with(func(c *Topology) { c.Servers.Count = n })
}

// fits refuses a server count that its network cannot address from the
// pool's first address (the broadcast address excluded).
func (p ServerPool) fits(nets map[string]Network) error {
	if p.Count < 1 {
		return fmt.Errorf("servers.count must be at least 1")
	}
	n, ok := nets[p.Network]
	if !ok {
		return fmt.Errorf("servers.network %q is not a network of the topology", p.Network)
	}
	if !p.FirstAddress.Is4() || !n.Subnet.Contains(p.FirstAddress) {
		return fmt.Errorf("servers.first_address %s is not in network %q (%s)", p.FirstAddress, p.Network, n.Subnet)
	}
	base, first := n.Subnet.Masked().Addr().As4(), p.FirstAddress.As4()
	offset := uint64(binary.BigEndian.Uint32(first[:]) - binary.BigEndian.Uint32(base[:]))
	room := uint64(1)<<(32-n.Subnet.Bits()) - offset - 1
	if uint64(p.Count) > room {
		return fmt.Errorf("servers.count %d does not fit network %q (%s) from %s: at most %d servers", p.Count, p.Network, n.Subnet, p.FirstAddress, room)
	}
	return nil
}

// FixedHosts returns the running brokers followed by the other fixed hosts.
func (t *Topology) FixedHosts() []Host { return append(t.BrokerHosts(), t.Hosts...) }

// AllHosts returns the fixed hosts followed by the generated servers.
func (t *Topology) AllHosts() []Host {
	hosts := t.FixedHosts()
	a := t.Servers.FirstAddress
	for i := 1; i <= t.Servers.Count; i++ {
		hosts = append(hosts, Host{Name: t.ServerName(i), Role: RoleServer, Addresses: map[string]netip.Addr{t.Servers.Network: a}})
		a = a.Next()
	}
	return hosts
}

// HostByRole returns the single host with role r; servers have several,
// and a cluster several brokers, so use AllHosts and BrokerHosts for them.
func (t *Topology) HostByRole(r string) (Host, error) {
	var found []Host
	for _, h := range t.FixedHosts() {
		if h.Role == r {
			found = append(found, h)
		}
	}
	switch len(found) {
	case 0:
		return Host{}, fmt.Errorf("no host has role %q", r)
	case 1:
		return found[0], nil
	}
	return Host{}, fmt.Errorf("role %q has %d hosts (%s), not one", r, len(found), strings.Join(hostNames(found), ", "))
}

// MustHost is HostByRole for roles Validate guarantees to exist.
func (t *Topology) MustHost(r string) Host {
	h, err := t.HostByRole(r)
	if err != nil {
		panic(err)
	}
	return h
}

// NetworkNames returns the network names in declaration order.
func (t *Topology) NetworkNames() []string {
	names := make([]string, 0, len(t.Networks))
	for _, n := range t.Networks {
		names = append(names, n.Name)
	}
	return names
}

// SortedNetworks returns a host's networks sorted by name.
func (h Host) SortedNetworks() []string {
	return slices.Sorted(maps.Keys(h.Addresses))
}

// NATSURL is the URL of the standalone NATS server.
func (t *Topology) NATSURL() string {
	return fmt.Sprintf("nats://%s:%d", t.FQDN(t.MustHost(RoleNATS).Name), t.Ports.NATSClient)
}

// Timing returns the named timing profile.
func (t *Topology) Timing(profile string) (Timings, error) {
	tm, ok := t.Timings[profile]
	if !ok {
		return Timings{}, fmt.Errorf("unknown timings profile %q (known: %s, %s)", profile, TimingsLab, TimingsReference)
	}
	return tm.forFleet(t.Servers.Count), nil
}

// UserNames lists the AAA users in declaration order.
func (t *Topology) UserNames() []string {
	names := make([]string, 0, len(t.Users))
	for _, u := range t.Users {
		names = append(names, u.Name)
	}
	return names
}
