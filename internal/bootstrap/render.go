package bootstrap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/choria-io/tokens"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/reproducible-choria/deployment/internal/duration"
	"github.com/reproducible-choria/deployment/internal/provhelper"
	"github.com/reproducible-choria/deployment/topology"
)

// conf is an ordered Choria configuration file (key = value lines).
type conf struct{ lines [][2]string }

func (c *conf) set(k, v string) { c.lines = append(c.lines, [2]string{k, v}) }

func (c *conf) bytes(header string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n# Written by choria-bootstrap from the lab topology.\n\n", header)
	for _, l := range c.lines {
		fmt.Fprintf(&b, "%s = %s\n", l[0], l[1])
	}
	return b.Bytes()
}

func (c *conf) settings() map[string]string {
	m := make(map[string]string, len(c.lines))
	for _, l := range c.lines {
		m[l[0]] = l[1]
	}
	return m
}

func seconds(d duration.Duration) string { return strconv.Itoa(int(d.Seconds())) }

func hostPort(host string, port int) string { return host + ":" + strconv.Itoa(port) }

// systemUser is the broker's system account user name; its password is generated.
const systemUser = "system"

// registrationIngestTopic is where servers publish inventory_content
// registration by default for a collective, and where the broker's adapter reads it.
func registrationIngestTopic(t *topology.Topology) string {
	return t.Collective + ".broadcast.agent.registration"
}

// adapterTopic turns a stream's wildcard subject into the adapter's per-node topic.
func adapterTopic(subject string) (string, error) {
	if !strings.HasSuffix(subject, ".>") {
		return "", fmt.Errorf("registration subject %q must end in .>", subject)
	}
	return strings.TrimSuffix(subject, ">") + "%s", nil
}

// renderBrokers is the record of the brokers the configurations name:
// their client URLs and cluster routes.
func (s *state) renderBrokers() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# The brokers every configuration here names, written by choria-bootstrap;\n# when the topology's differ, those configurations are rendered again.\n")
	for _, u := range s.topo.BrokerURLs() {
		fmt.Fprintf(&b, "client %s\n", u)
	}
	for _, p := range s.topo.BrokerPeers() {
		fmt.Fprintf(&b, "peer %s\n", p)
	}
	fmt.Fprintf(&b, "replicas %d\n", s.topo.StreamReplicas())
	return b.Bytes(), nil
}

// brokerHosts is the brokers' client addresses as Choria's
// middleware_hosts lists them.
func brokerHosts(t *topology.Topology) string { return strings.Join(t.BrokerAddresses(), ",") }

func (s *state) renderBroker(host topology.Host) ([]byte, error) {
	t := s.topo
	dir := t.Roles[topology.RoleBroker].ConfigDir
	topic, err := adapterTopic(t.Streams.Registration.Subjects[0])
	if err != nil {
		return nil, err
	}
	var c conf
	c.set("identity", t.FQDN(host.Name))
	c.set("loglevel", "info")
	c.set("plugin.choria.stats_port", strconv.Itoa(t.Ports.BrokerStats))
	c.set("plugin.choria.broker_network", "true")
	c.set("plugin.choria.network.client_port", strconv.Itoa(t.Ports.BrokerClient))
	c.set("plugin.choria.network.peer_port", strconv.Itoa(t.Ports.BrokerCluster))
	if peers := t.BrokerPeers(); len(peers) > 0 {
		// NATS routes between the brokers, and JetStream over them. No
		// peer_user/peer_password: go-choria v0.30.2 makes them required of
		// incoming routes but drops user information from the peers it
		// dials (srvcache.StringHostsToServers), so every route would be
		// refused (README, "Cluster").
		c.set("plugin.choria.network.peers", strings.Join(peers, ","))
	}
	c.set("plugin.choria.network.stream.store", path.Join(t.Roles[topology.RoleBroker].StateDir, "streams"))
	// A broker creates its system streams (CHORIA_EVENTS, ...) once, when
	// it starts. With replicas left at -1 it waits a random 10-70 s first,
	// then gives them one replica per peer it is configured with; with a
	// number it tries at once. A single broker is given 1, so its streams
	// exist as soon as it serves. A cluster's brokers all start before
	// they have elected a JetStream meta leader, so an attempt at once
	// fails on every one of them ("context deadline exceeded") and is not
	// tried again: they are given -1, which counts the topology's brokers
	// (the peers listed) after the wait.
	replicas := "1"
	if t.Clustered() {
		replicas = "-1"
	}
	for _, k := range []string{"event", "machine", "advisory", "leader_election", "executor"} {
		c.set("plugin.choria.network.stream."+k+"_replicas", replicas)
	}
	c.set("plugin.choria.network.system.user", systemUser)
	c.set("plugin.choria.network.system.password", s.text(fileSystemPassword))
	c.set("plugin.choria.network.provisioning.client_password", s.text(fileProvisioningPassword))
	// its adapters connect to the broker they run in
	c.set("plugin.choria.middleware_hosts", hostPort(t.FQDN(host.Name), t.Ports.BrokerClient))
	c.set("plugin.choria.use_srv", "false")
	c.set("plugin.security.provider", "choria")
	c.set("plugin.security.choria.certificate", path.Join(dir, "tls.crt"))
	c.set("plugin.security.choria.key", path.Join(dir, "tls.key"))
	c.set("plugin.security.choria.token_file", path.Join(dir, "broker.jwt"))
	c.set("plugin.security.choria.seed_file", path.Join(dir, "broker.seed"))
	c.set("plugin.security.issuer.names", t.IssuerName)
	c.set("plugin.security.issuer."+t.IssuerName+".public", s.publicOf(fileIssuerSeed))
	c.set("plugin.choria.adapters", "registration")
	c.set("plugin.choria.adapter.registration.type", "choria_streams")
	c.set("plugin.choria.adapter.registration.stream.topic", topic)
	c.set("plugin.choria.adapter.registration.ingest.topic", registrationIngestTopic(t))
	c.set("plugin.choria.adapter.registration.ingest.protocol", "request")
	return c.bytes("Choria Broker"), nil
}

func (s *state) renderClient() ([]byte, error) {
	t := s.topo
	aaa := t.MustHost(topology.RoleAAA)
	var c conf
	c.set("loglevel", "warn")
	c.set("plugin.choria.discovery.broadcast.windowed_timeout", "true")
	c.set("plugin.choria.middleware_hosts", brokerHosts(t))
	c.set("plugin.choria.use_srv", "false")
	c.set("plugin.choria.security.request_signer.service", "true")
	c.set("plugin.login.aaasvc.login.url", fmt.Sprintf("https://%s/choria/v1/login", hostPort(t.FQDN(aaa.Name), t.Ports.AAALogin)))
	c.set("plugin.choria.network.system.user", systemUser)
	c.set("plugin.choria.network.system.password", s.text(fileSystemPassword))
	c.set("plugin.security.provider", "choria")
	c.set("plugin.security.choria.token_file", "~/.config/choria/client.jwt")
	c.set("plugin.security.choria.seed_file", "~/.config/choria/client.key")
	c.set("plugin.choria.services.registry.cache", "~/.config/choria/registry")
	return c.bytes("Choria client"), nil
}

// serverSettings are the settings every provisioned server receives through
// the provisioning helper, as the reference helper writes them.
func (s *state) serverSettings() (*conf, error) {
	t := s.topo
	tm := s.timings
	paths := t.ServerPaths
	var c conf
	c.set("loglevel", "info")
	c.set("plugin.choria.server.provision", "false")
	c.set("plugin.choria.middleware_hosts", strings.Join(t.BrokerURLs(), ","))
	c.set("plugin.choria.use_srv", "false")
	c.set("rpcauthorization", "1")
	c.set("rpcauthprovider", "aaasvc")
	c.set("plugin.choria.status_file_path", paths.StatusFile)
	c.set("plugin.choria.status_update_interval", seconds(tm.StatusInterval))
	c.set("plugin.choria.submission.spool", paths.SubmissionSpool)
	c.set("plugin.security.issuer.names", t.IssuerName)
	c.set("plugin.security.issuer."+t.IssuerName+".public", s.publicOf(fileIssuerSeed))
	c.set("plugin.security.provider", "choria")
	c.set("plugin.choria.machine.store", paths.MachineDir)
	c.set("plugin.choria.services.registry.store", paths.PluginsDir)
	// external agents are found under the mcorpc libdir, not the legacy libdir
	c.set("libdir", paths.PluginsDir)
	c.set("plugin.choria.agent_provider.mcorpc.libdir", paths.PluginsDir)
	c.set("plugin.yaml", paths.FactsFile)
	c.set("registration", "inventory_content")
	c.set("registerinterval", seconds(tm.RegistrationInterval))
	c.set("plugin.choria.executor.enabled", "true")
	c.set("plugin.choria.executor.spool", "/var/spool/choria/executor")
	// The external agents machine verifies its manifest with the first key,
	// the CHORIA_PLUGINS bucket manager with the second.
	c.set("plugin.choria.machine.signing_key", s.publicOf(filePluginSignerSeed))
	c.set("plugin.machines.signing_key", s.publicOf(filePluginSignerSeed))
	c.set("plugin.machines.download", "true")
	c.set("plugin.machines.bucket", t.Streams.PluginsBucket)
	c.set("plugin.machines.key", t.Streams.PluginsKey)
	c.set("plugin.machines.poll_interval", tm.PluginsPollInterval.String())
	c.set("plugin.machines.check_interval", tm.PluginsCheckInterval.String())
	return &c, nil
}

func (s *state) renderHelper() ([]byte, error) {
	c, err := s.serverSettings()
	if err != nil {
		return nil, err
	}
	h := provhelper.Config{
		Settings:      c.settings(),
		Permissions:   provhelper.ServerPermissions{Streams: true, Submission: true, ServiceHost: true},
		TokenValidity: s.topo.Validity.ServerToken,
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("provisioning helper configuration: %w", err)
	}
	return jsonBytes(h)
}

func (s *state) renderProvisioner() ([]byte, error) {
	t := s.topo
	dir := t.Roles[topology.RoleProvisioner].ConfigDir
	cfg := struct {
		Workers         int             `yaml:"workers"`
		Interval        string          `yaml:"interval"`
		Logfile         string          `yaml:"logfile"`
		Loglevel        string          `yaml:"loglevel"`
		Helper          string          `yaml:"helper"`
		Token           string          `yaml:"token"`
		Insecure        bool            `yaml:"choria_insecure"`
		Site            string          `yaml:"site"`
		MonitorPort     int             `yaml:"monitor_port"`
		BrokerPassword  string          `yaml:"broker_provisioning_password"`
		JWTVerifyCert   string          `yaml:"jwt_verify_cert"`
		JWTSigningKey   string          `yaml:"jwt_signing_key"`
		JWTSigningToken string          `yaml:"jwt_signing_token"`
		Features        map[string]bool `yaml:"features"`
	}{
		Workers:         4,
		Interval:        s.timings.ProvisionerInterval.String(),
		Logfile:         choriaLogToStdout,
		Loglevel:        "warn",
		Helper:          s.opts.HelperCommand + " --config " + path.Join(dir, "helper.json"),
		Token:           s.text(fileProvisioningToken),
		Site:            t.Domain,
		MonitorPort:     t.Ports.ProvisionerMonitor,
		BrokerPassword:  s.text(fileProvisioningPassword),
		JWTVerifyCert:   s.publicOf(fileIssuerSeed),
		JWTSigningKey:   path.Join(dir, "signer.seed"),
		JWTSigningToken: path.Join(dir, "signer.jwt"),
		Features:        map[string]bool{"jwt": true, "ed25519": true},
	}
	return yamlBytes(cfg, "Choria Provisioner")
}

func (s *state) renderProvisionerChoria() ([]byte, error) {
	t := s.topo
	dir := t.Roles[topology.RoleProvisioner].ConfigDir
	var c conf
	c.set("identity", provisionerIdentity)
	c.set("loglevel", "warn")
	c.set("plugin.security.provider", "choria")
	c.set("plugin.security.choria.token_file", path.Join(dir, "signer.jwt"))
	c.set("plugin.security.choria.seed_file", path.Join(dir, "signer.seed"))
	c.set("plugin.choria.middleware_hosts", brokerHosts(t))
	c.set("plugin.choria.use_srv", "false")
	return c.bytes("Choria Provisioner's Choria client"), nil
}

func (s *state) renderAAAChoria() ([]byte, error) {
	t := s.topo
	dir := t.Roles[topology.RoleAAA].ConfigDir
	var c conf
	c.set("identity", t.FQDN(t.MustHost(topology.RoleAAA).Name))
	c.set("loglevel", "warn")
	c.set("plugin.security.provider", "choria")
	c.set("plugin.security.choria.seed_file", path.Join(dir, "signer-service.seed"))
	c.set("plugin.security.choria.token_file", path.Join(dir, "signer-service.jwt"))
	c.set("plugin.choria.middleware_hosts", brokerHosts(t))
	c.set("plugin.choria.use_srv", "false")
	return c.bytes("AAA service's Choria client"), nil
}

// AAAAuditLog is where the AAA service writes its audit log.
func AAAAuditLog(t *topology.Topology) string {
	return path.Join(t.Roles[topology.RoleAAA].StateDir, "signer_audit.json")
}

func (s *state) renderAAA() ([]byte, error) {
	t := s.topo
	dir := t.Roles[topology.RoleAAA].ConfigDir
	type user struct {
		Username          string                    `json:"username"`
		Password          string                    `json:"password"`
		OPAPolicyFile     string                    `json:"opa_policy_file,omitempty"`
		BrokerPermissions *tokens.ClientPermissions `json:"broker_permissions"`
	}
	var users []user
	for _, u := range t.Users {
		perms, err := u.ClientPermissions()
		if err != nil {
			return nil, err
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(s.text(userPasswordFile(u.Name))), bcrypt.DefaultCost)
		if err != nil {
			return nil, fmt.Errorf("hashing password of %s: %w", u.Name, err)
		}
		nu := user{Username: u.Name, Password: string(hash), BrokerPermissions: perms}
		if u.OPAPolicy != "" {
			nu.OPAPolicyFile = path.Join(dir, policyFile(u.Name))
		}
		users = append(users, nu)
	}
	cfg := map[string]any{
		"choria_config":   path.Join(dir, "aaa-choria.conf"),
		"logfile":         choriaLogToStdout,
		"loglevel":        "info",
		"authenticator":   "userlist",
		"authorizer":      "opa",
		"signer":          "basicjwt",
		"monitor_port":    t.Ports.AAAMonitor,
		"site":            t.Domain,
		"tls_certificate": path.Join(dir, "tls.crt"),
		"tls_key":         path.Join(dir, "tls.key"),
		"port":            t.Ports.AAALogin,
		"auditors":        []string{"logfile"},
		"logfile_auditor": map[string]string{"logfile": AAAAuditLog(t)},
		"basicjwt_signer": map[string]any{
			"signing_certificate": path.Join(dir, "chain-signer.public"),
			"signing_token":       path.Join(dir, "request-signer.jwt"),
			"signing_seed":        path.Join(dir, "request-signer.seed"),
			"max_validity":        t.Validity.MaxSigning.String(),
			"choria_service":      true,
		},
		"userlist_authenticator": map[string]any{
			"signing_key":   path.Join(dir, "chain-signer.seed"),
			"signing_token": path.Join(dir, "chain-signer.jwt"),
			"validity":      t.Validity.UserLogin.String(),
			"users":         users,
		},
	}
	return jsonBytes(cfg)
}

func (s *state) renderReplicator() ([]byte, error) {
	t := s.topo
	dir := t.Roles[topology.RoleReplicator].ConfigDir
	choria := map[string]string{
		"seed_file":  path.Join(dir, "choria.seed"),
		"jwt_file":   path.Join(dir, "choria.jwt"),
		"collective": t.Collective,
	}
	cfg := map[string]any{
		"name":         t.Streams.ReplicatorName,
		"monitor_port": t.Ports.ReplicatorMonitor,
		"loglevel":     "info",
		"state_store":  t.Roles[topology.RoleReplicator].StateDir,
		"streams": []map[string]any{{
			"stream":           t.Streams.Registration.Name,
			"start_sequence":   1,
			"source_url":       strings.Join(t.BrokerURLs(), ","),
			"target_url":       t.NATSURL(),
			"inspect_field":    "sender",
			"inspect_duration": "20m",
			"warn_duration":    "11m",
			"size_trigger":     1024,
			"advisory":         map[string]string{"subject": "choria.node_advisories.%v"},
			"source_choria":    choria,
		}},
		"heartbeats": map[string]any{
			"interval": s.timings.ReplicatorHeartbeat.String(),
			"url":      strings.Join(t.BrokerURLs(), ","),
			"headers":  map[string]string{"from": "choria_" + strings.ToLower(t.Streams.ReplicatorName)},
			"choria":   choria,
			"subjects": []map[string]string{{"subject": t.Streams.MonitorSubject}},
		},
	}
	return yamlBytes(cfg, "Choria Stream Replicator")
}

func jsonBytes(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func yamlBytes(v any, what string) ([]byte, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("rendering %s configuration: %w", what, err)
	}
	return append([]byte("# "+what+" configuration, written by choria-bootstrap.\n"), b...), nil
}

// choriaLogToStdout is the logfile keyword go-choria's log opener (used by
// the provisioner and aaasvc) writes to standard output with. A path such
// as /dev/stdout is opened as a file, which fails when standard output is
// a socket, as under systemd's journal.
const choriaLogToStdout = "stdout"
