package bootstrap

import (
	"crypto/ed25519"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choria-io/go-choria/config"
	"github.com/choria-io/tokens"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/reproducible-choria/deployment/internal/provhelper"
	"github.com/reproducible-choria/deployment/topology"
)

func defaultTopology(t *testing.T) *topology.Topology {
	t.Helper()
	topo, err := topology.Default()
	require.NoError(t, err)
	return topo
}

func bootstrap(t *testing.T, opts Options) (string, *Result) {
	t.Helper()
	if opts.Topology == nil {
		opts.Topology = defaultTopology(t)
	}
	if opts.Out == "" {
		opts.Out = filepath.Join(t.TempDir(), "creds")
	}
	res, err := Run(opts)
	require.NoError(t, err)
	return opts.Out, res
}

func read(t *testing.T, out, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(rel)))
	require.NoError(t, err)
	return b
}

func issuerKey(t *testing.T, out string) ed25519.PublicKey {
	t.Helper()
	pub, err := hex.DecodeString(string(read(t, out, fileIssuerPublic)))
	require.NoError(t, err)
	seed, err := parseSeed(read(t, out, fileIssuerSeed))
	require.NoError(t, err)
	require.Equal(t, seed.Public().(ed25519.PublicKey), ed25519.PublicKey(pub), "issuer.public must match issuer.seed")
	return pub
}

func seedPublic(t *testing.T, out, rel string) string {
	t.Helper()
	k, err := parseSeed(read(t, out, rel))
	require.NoError(t, err)
	return publicHex(k)
}

func expiresWithin(t *testing.T, c tokens.StandardClaims, validity time.Duration) {
	t.Helper()
	exp := c.ExpiresAt.Time
	assert.WithinDuration(t, time.Now().Add(validity), exp, time.Minute, "expiry")
}

func TestTokensVerifyAgainstTheIssuer(t *testing.T) {
	topo := defaultTopology(t)
	out, _ := bootstrap(t, Options{Topology: topo})
	issuer := issuerKey(t, out)
	v := topo.Validity

	t.Run("broker", func(t *testing.T) {
		c, err := tokens.ParseServerToken(string(read(t, out, "broker/broker.jwt")), issuer)
		require.NoError(t, err)
		assert.Equal(t, "broker.choria.local", c.ChoriaIdentity)
		assert.Equal(t, []string{"choria"}, c.Collectives)
		assert.Equal(t, "choria", c.OrganizationUnit)
		assert.Equal(t, []string{"choria.node_metadata.>"}, c.AdditionalPublishSubjects)
		assert.Equal(t, seedPublic(t, out, "broker/broker.seed"), c.PublicKey)
		assert.Equal(t, tokens.ServerPurpose, c.Purpose)
		expiresWithin(t, c.StandardClaims, v.BrokerToken.Duration)
	})

	t.Run("aaa signing service", func(t *testing.T) {
		c, err := tokens.ParseServerToken(string(read(t, out, "aaa/signer-service.jwt")), issuer)
		require.NoError(t, err)
		assert.Equal(t, "aaa.choria.local", c.ChoriaIdentity)
		assert.Equal(t, []string{"choria"}, c.Collectives)
		require.NotNil(t, c.Permissions)
		assert.True(t, c.Permissions.ServiceHost)
		assert.False(t, c.Permissions.Streams)
		assert.Equal(t, seedPublic(t, out, "aaa/signer-service.seed"), c.PublicKey)
	})

	t.Run("aaa chain signer is a chained issuer without fleet access", func(t *testing.T) {
		c, err := tokens.ParseClientIDToken(string(read(t, out, "aaa/chain-signer.jwt")), issuer, true)
		require.NoError(t, err)
		assert.Equal(t, chainSignerIdentity, c.CallerID)
		ok, _, err := c.IsSignedByIssuer(issuer)
		require.NoError(t, err)
		assert.True(t, ok, "chain signer must carry the issuer's trust signature")
		assert.False(t, c.Permissions.FleetManagement)
		assert.False(t, c.Permissions.SignedFleetManagement)
		assert.Equal(t, string(read(t, out, "aaa/chain-signer.public")), c.PublicKey)
		expiresWithin(t, c.StandardClaims, v.Signers.Duration)
	})

	t.Run("aaa request signer delegates authentication", func(t *testing.T) {
		c, err := tokens.ParseClientIDToken(string(read(t, out, "aaa/request-signer.jwt")), issuer, true)
		require.NoError(t, err)
		assert.Equal(t, requestSignerIdentity, c.CallerID)
		assert.True(t, c.Permissions.AuthenticationDelegator)
		assert.False(t, c.Permissions.FleetManagement)
		assert.Empty(t, c.TrustChainSignature, "the request signer is not a chain issuer")
		assert.Equal(t, seedPublic(t, out, "aaa/request-signer.seed"), c.PublicKey)
	})

	t.Run("provisioner signer provisions and issues", func(t *testing.T) {
		c, err := tokens.ParseClientIDToken(string(read(t, out, "provisioner/signer.jwt")), issuer, true)
		require.NoError(t, err)
		assert.Equal(t, provisionerIdentity, c.CallerID)
		assert.True(t, c.Permissions.ServerProvisioner)
		assert.True(t, c.Permissions.FleetManagement)
		ok, _, err := c.IsSignedByIssuer(issuer)
		require.NoError(t, err)
		assert.True(t, ok)
		assert.Equal(t, seedPublic(t, out, "provisioner/signer.seed"), c.PublicKey)
	})

	t.Run("stream replicator", func(t *testing.T) {
		c, err := tokens.ParseClientIDToken(string(read(t, out, "replicator/choria.jwt")), issuer, true)
		require.NoError(t, err)
		assert.Equal(t, replicatorIdentity, c.CallerID)
		assert.True(t, c.Permissions.StreamsUser)
		assert.False(t, c.Permissions.FleetManagement)
		assert.Equal(t, []string{"choria.stream-replicator.sync.>", "choria.node_advisories.>", "choria.node_metadata._monitor"}, c.AdditionalPublishSubjects)
		assert.Equal(t, []string{"choria.stream-replicator.sync.>"}, c.AdditionalSubscribeSubjects)
	})

	t.Run("provisioning token", func(t *testing.T) {
		c, err := tokens.ParseProvisioningToken(string(read(t, out, fileProvisioningJWT)), issuer)
		require.NoError(t, err)
		assert.Equal(t, string(read(t, out, fileProvisioningToken)), c.Token)
		assert.Equal(t, "nats://broker.choria.local:4222", c.URLs)
		assert.True(t, c.ProvDefault)
		assert.True(t, c.ProtoV2)
		assert.True(t, c.AllowUpdate)
		assert.False(t, c.Secure)
		expiresWithin(t, c.StandardClaims, v.ProvisioningToken.Duration)
	})

	t.Run("a token from another issuer is rejected", func(t *testing.T) {
		other, _ := bootstrap(t, Options{Topology: topo})
		_, err := tokens.ParseServerToken(string(read(t, other, "broker/broker.jwt")), issuer)
		assert.Error(t, err)
	})
}

func TestTLSCertificatesServeTheirHosts(t *testing.T) {
	out, _ := bootstrap(t, Options{})
	for _, tc := range []struct{ dir, host, ip string }{
		{"broker", "broker.choria.local", "198.18.4.10"},
		{"aaa", "aaa.choria.local", "198.18.5.30"},
	} {
		pair, err := tls.X509KeyPair(read(t, out, tc.dir+"/tls.crt"), read(t, out, tc.dir+"/tls.key"))
		require.NoError(t, err, tc.dir)
		leaf := pair.Leaf
		require.NotNil(t, leaf)
		assert.NoError(t, leaf.VerifyHostname(tc.host))
		assert.NoError(t, leaf.VerifyHostname(tc.ip))
		assert.Error(t, leaf.VerifyHostname("server1.choria.local"))
	}
}

func loadChoriaConf(t *testing.T, out, rel string, server bool) *config.Config {
	t.Helper()
	cfg, err := config.NewSystemConfig(filepath.Join(out, filepath.FromSlash(rel)), server)
	require.NoError(t, err, rel)
	return cfg
}

func TestChoriaConfigurationsParseUpstream(t *testing.T) {
	out, _ := bootstrap(t, Options{})
	issuer := hex.EncodeToString(issuerKey(t, out))

	broker := loadChoriaConf(t, out, brokerFile("broker", brokerConfig), true)
	assert.Equal(t, "broker.choria.local", broker.Identity)
	assert.True(t, broker.Choria.BrokerNetwork)
	assert.Equal(t, 4222, broker.Choria.NetworkClientPort)
	assert.Equal(t, "/etc/choria-broker/broker.seed", broker.Choria.ChoriaSecuritySeedFile)
	assert.Equal(t, "/etc/choria-broker/broker.jwt", broker.Choria.ChoriaSecurityTokenFile)
	assert.Equal(t, string(read(t, out, fileProvisioningPassword)), broker.Choria.NetworkProvisioningClientPassword)
	assert.Equal(t, string(read(t, out, fileSystemPassword)), broker.Choria.NetworkSystemPassword)
	assert.Equal(t, []string{"choria"}, broker.Choria.IssuerNames)
	assert.Equal(t, issuer, broker.Option("plugin.security.issuer.choria.public", ""))
	assert.Equal(t, []string{"registration"}, broker.Choria.BrokerAdapters)
	// set, so the broker creates its system streams at once
	assert.Equal(t, 1, broker.Choria.NetworkEventStoreReplicas)
	assert.Equal(t, 1, broker.Choria.NetworkMachineStoreReplicas)
	assert.Equal(t, 1, broker.Choria.NetworkStreamAdvisoryReplicas)
	assert.Equal(t, 1, broker.Choria.NetworkLeaderElectionReplicas)
	assert.Equal(t, 1, broker.Choria.NetworkExecutorReplicas)
	assert.Equal(t, "choria.node_metadata.%s", broker.Option("plugin.choria.adapter.registration.stream.topic", ""))

	client := loadChoriaConf(t, out, fileClientConfig, false)
	assert.Equal(t, []string{"broker.choria.local:4222"}, client.Choria.MiddlewareHosts)
	assert.Equal(t, []string{"https://aaa.choria.local:8080/choria/v1/login"}, client.Choria.AAAServiceLoginURLs)
	assert.True(t, client.Choria.RemoteSignerService)
	assert.Equal(t, broker.Choria.NetworkSystemPassword, client.Choria.NetworkSystemPassword)
	assert.Contains(t, client.Choria.RegistryClientCache, ".config/choria/registry")

	prov := loadChoriaConf(t, out, fileProvisionerChoria, false)
	assert.Equal(t, provisionerIdentity, prov.Identity)
	assert.Equal(t, "/etc/choria-provisioner/signer.seed", prov.Choria.ChoriaSecuritySeedFile)

	aaa := loadChoriaConf(t, out, "aaa/aaa-choria.conf", false)
	assert.Equal(t, "aaa.choria.local", aaa.Identity)
	assert.Equal(t, "/etc/aaasvc/signer-service.jwt", aaa.Choria.ChoriaSecurityTokenFile)
}

func clusterTopology(t *testing.T) *topology.Topology {
	t.Helper()
	c, err := defaultTopology(t).Cluster()
	require.NoError(t, err)
	return c
}

// Each broker of a cluster has credentials of its own and a configuration
// that routes to the others and replicates every stream three times; every
// program that connects to the broker names all three.
func TestClusterConfigurations(t *testing.T) {
	topo := clusterTopology(t)
	out, _ := bootstrap(t, Options{Topology: topo})
	issuer := issuerKey(t, out)
	urls := []string{"nats://broker.choria.local:4222", "nats://broker2.choria.local:4222", "nats://broker3.choria.local:4222"}
	hosts := []string{"broker.choria.local:4222", "broker2.choria.local:4222", "broker3.choria.local:4222"}

	seeds := map[string]bool{}
	for _, name := range []string{"broker", "broker2", "broker3"} {
		fqdn := name + ".choria.local"
		c, err := tokens.ParseServerToken(string(read(t, out, brokerFile(name, "broker.jwt"))), issuer)
		require.NoError(t, err, name)
		assert.Equal(t, fqdn, c.ChoriaIdentity)
		assert.Equal(t, seedPublic(t, out, brokerFile(name, "broker.seed")), c.PublicKey, "%s's token is for its own key", name)
		seeds[string(read(t, out, brokerFile(name, "broker.seed")))] = true
		pair, err := tls.X509KeyPair(read(t, out, brokerFile(name, "tls.crt")), read(t, out, brokerFile(name, "tls.key")))
		require.NoError(t, err, name)
		assert.NoError(t, pair.Leaf.VerifyHostname(fqdn))

		b := loadChoriaConf(t, out, brokerFile(name, brokerConfig), true)
		assert.Equal(t, fqdn, b.Identity)
		assert.Equal(t, []string{"nats://broker.choria.local:5222", "nats://broker2.choria.local:5222", "nats://broker3.choria.local:5222"}, b.Choria.NetworkPeers)
		assert.Equal(t, 5222, b.Choria.NetworkPeerPort)
		assert.Empty(t, b.Choria.NetworkPeerUser, "routes could not log in: go-choria drops the peers' user information")
		assert.Len(t, b.Choria.NetworkPeers, topo.StreamReplicas(), "the peers go-choria counts for its system streams' replicas")
		for what, n := range map[string]int{"event": b.Choria.NetworkEventStoreReplicas, "machine": b.Choria.NetworkMachineStoreReplicas,
			"advisory": b.Choria.NetworkStreamAdvisoryReplicas, "leader_election": b.Choria.NetworkLeaderElectionReplicas, "executor": b.Choria.NetworkExecutorReplicas} {
			assert.Equal(t, -1, n, "%s %s_replicas: one per peer, counted once the cluster has formed", name, what)
		}
		assert.Equal(t, []string{fqdn + ":4222"}, b.Choria.MiddlewareHosts, "%s's adapters connect to itself", name)
		assert.Equal(t, "/etc/choria-broker/broker.seed", b.Choria.ChoriaSecuritySeedFile, "every broker's files are at the role's paths")
	}
	assert.Len(t, seeds, 3, "a key pair per broker")

	assert.Equal(t, hosts, loadChoriaConf(t, out, fileClientConfig, false).Choria.MiddlewareHosts)
	assert.Equal(t, hosts, loadChoriaConf(t, out, fileProvisionerChoria, false).Choria.MiddlewareHosts)
	assert.Equal(t, hosts, loadChoriaConf(t, out, "aaa/aaa-choria.conf", false).Choria.MiddlewareHosts)

	h, err := provhelper.LoadConfig(filepath.Join(out, fileHelperConfig))
	require.NoError(t, err)
	assert.Equal(t, strings.Join(urls, ","), h.Settings["plugin.choria.middleware_hosts"])

	prov, err := tokens.ParseProvisioningToken(string(read(t, out, fileProvisioningJWT)), issuer)
	require.NoError(t, err)
	assert.Equal(t, strings.Join(urls, ","), prov.URLs)

	var sr struct {
		Streams []struct {
			SourceURL string `yaml:"source_url"`
		} `yaml:"streams"`
		Heartbeats struct {
			URL string `yaml:"url"`
		} `yaml:"heartbeats"`
	}
	require.NoError(t, yaml.Unmarshal(read(t, out, fileReplicatorConfig), &sr))
	assert.Equal(t, strings.Join(urls, ","), sr.Streams[0].SourceURL)
	assert.Equal(t, strings.Join(urls, ","), sr.Heartbeats.URL)
}

// Growing a deployment into a cluster keeps every key and secret, makes
// the new brokers' credentials, and renders again exactly the files that
// name the brokers; a second run with the same brokers changes nothing.
func TestAddingBrokersIsIdempotent(t *testing.T) {
	single := defaultTopology(t)
	out, _ := bootstrap(t, Options{Topology: single})
	before := snapshot(t, out)

	res, err := Run(Options{Topology: clusterTopology(t), Out: out})
	require.NoError(t, err)
	var created []string
	for _, name := range []string{"broker2", "broker3"} {
		for _, f := range []string{"broker.seed", "broker.jwt", "tls.key", "tls.crt", brokerConfig} {
			created = append(created, brokerFile(name, f))
		}
	}
	assert.ElementsMatch(t, created, res.Created)
	assert.ElementsMatch(t, []string{fileBrokers, brokerFile("broker", brokerConfig), fileClientConfig, fileProvisionerChoria, "aaa/aaa-choria.conf",
		fileHelperConfig, fileReplicatorConfig, fileProvisioningJWT}, res.Replaced)
	after := snapshot(t, out)
	for k, v := range before {
		if !slices.Contains(res.Replaced, k) {
			assert.Equal(t, v, after[k], "%s changed when brokers were added", k)
		}
	}

	again, err := Run(Options{Topology: clusterTopology(t), Out: out})
	require.NoError(t, err)
	assert.Empty(t, again.Created)
	assert.Empty(t, again.Replaced)
	assert.Equal(t, after, snapshot(t, out))

	// an output made before the record of brokers existed follows it too
	require.NoError(t, os.Remove(filepath.Join(out, fileBrokers)))
	res, err = Run(Options{Topology: clusterTopology(t), Out: out})
	require.NoError(t, err)
	assert.Equal(t, []string{fileBrokers}, res.Created)
	assert.Contains(t, res.Replaced, fileClientConfig)
	assert.NotContains(t, res.Replaced, brokerFile("broker2", "broker.jwt"))

	// one broker rotated alone
	res, err = Run(Options{Topology: clusterTopology(t), Out: out, Rotate: []string{"broker2"}})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{brokerFile("broker2", "broker.seed"), brokerFile("broker2", "broker.jwt"), brokerFile("broker2", "tls.key"),
		brokerFile("broker2", "tls.crt"), brokerFile("broker2", brokerConfig)}, res.Replaced)
}

func TestBrokerNamedLikeARoleDirectory(t *testing.T) {
	b := strings.Replace(string(topology.DefaultJSON()), `"name": "broker"`, `"name": "operator"`, 1)
	topo, err := topology.Parse([]byte(b), "test.json")
	require.NoError(t, err)
	_, err = Run(Options{Topology: topo, Out: t.TempDir()})
	assert.ErrorContains(t, err, `broker "operator": its credentials would share the directory "operator"`)
}

func TestServerSettingsParseUpstream(t *testing.T) {
	topo := defaultTopology(t)
	out, _ := bootstrap(t, Options{Topology: topo, Timings: topology.TimingsLab})
	h, err := provhelper.LoadConfig(filepath.Join(out, fileHelperConfig))
	require.NoError(t, err)
	assert.True(t, h.Permissions.Streams && h.Permissions.Submission && h.Permissions.ServiceHost)
	assert.Equal(t, topo.Validity.ServerToken, h.TokenValidity)

	// Answer the real request a v0.16.0 provisioner sent, and write the
	// configuration as the server does (key=value lines).
	helper, err := provhelper.New(h, time.Now)
	require.NoError(t, err)
	request, err := os.ReadFile("../provhelper/testdata/provisioning-request.json")
	require.NoError(t, err)
	reply := helper.Reply(request)
	require.False(t, reply.Defer, reply.Msg)
	var b strings.Builder
	for k, v := range reply.Configuration {
		b.WriteString(k + "=" + v + "\n")
	}
	f := filepath.Join(t.TempDir(), "server.conf")
	require.NoError(t, os.WriteFile(f, []byte(b.String()), 0o600))
	cfg, err := config.NewSystemConfig(f, true)
	require.NoError(t, err)
	assert.Equal(t, "s16.choria.local", cfg.Identity)
	assert.Equal(t, "/etc/choria/server.jwt", cfg.Choria.ChoriaSecurityTokenFile)
	assert.Equal(t, "/etc/choria/server.seed", cfg.Choria.ChoriaSecuritySeedFile)
	assert.False(t, cfg.Choria.Provision)
	assert.Equal(t, []string{"nats://broker.choria.local:4222"}, cfg.Choria.MiddlewareHosts)
	assert.True(t, cfg.RPCAuthorization)
	assert.Equal(t, "Aaasvc", cfg.RPCAuthorizationProvider)
	assert.Equal(t, "/var/log/choria-status.json", cfg.Choria.StatusFilePath)
	assert.Equal(t, "/var/lib/choria/submission", cfg.Choria.SubmissionSpool)
	assert.Equal(t, "/etc/choria/machine", cfg.Choria.MachineSourceDir)
	assert.Equal(t, "/var/lib/choria/plugins", cfg.Choria.RegistryServiceStore)
	assert.Equal(t, []string{"/var/lib/choria/plugins"}, cfg.LibDir)
	assert.Equal(t, []string{"/var/lib/choria/plugins"}, cfg.Choria.RubyLibdir, "where external agents are found")
	assert.Equal(t, "/etc/choria/facts.json", cfg.FactSourceFile)
	assert.Equal(t, []string{"inventory_content"}, cfg.Registration)
	assert.Equal(t, int(topo.Timings[topology.TimingsLab].RegistrationInterval.Seconds()), cfg.RegisterInterval)
	assert.True(t, cfg.Choria.ExecutorEnabled)
	pluginSigner := seedPublic(t, out, filePluginSignerSeed)
	assert.Equal(t, pluginSigner, cfg.Choria.MachinesSignerPublicKey)
	assert.Equal(t, pluginSigner, cfg.Choria.AutonomousAgentPublicKey)
	assert.True(t, cfg.Choria.AutonomousAgentsDownload)
	assert.Equal(t, "CHORIA_PLUGINS", cfg.Choria.AutonomousAgentsBucket)
	assert.Equal(t, "plugins", cfg.Choria.AutonomousAgentsKey)
	assert.Equal(t, hex.EncodeToString(issuerKey(t, out)), cfg.Option("plugin.security.issuer.choria.public", ""))
	for _, k := range []string{"identity", "plugin.security.choria.token_file", "plugin.security.choria.seed_file"} {
		assert.NotContains(t, h.Settings, k, "per-server settings are the helper's to add")
	}
	assert.InDelta(t, time.Now().Add(topo.Validity.ServerToken.Duration).Unix(), reply.ServerClaims.ExpiresAt, 5, "absolute expiry")
}

func TestServiceConfigurations(t *testing.T) {
	topo := defaultTopology(t)
	out, _ := bootstrap(t, Options{Topology: topo, DemoSecrets: true})
	issuer := hex.EncodeToString(issuerKey(t, out))

	var prov map[string]any
	require.NoError(t, yaml.Unmarshal(read(t, out, fileProvisionerConfig), &prov))
	assert.Equal(t, "s3cret", prov["token"])
	assert.Equal(t, "s3cret", prov["broker_provisioning_password"])
	assert.Equal(t, issuer, prov["jwt_verify_cert"])
	assert.Equal(t, "1m", prov["interval"])
	assert.Equal(t, "choria-provision-helper --config /etc/choria-provisioner/helper.json", prov["helper"])
	assert.Equal(t, map[string]any{"jwt": true, "ed25519": true}, prov["features"])

	var sr struct {
		Name       string `yaml:"name"`
		StateStore string `yaml:"state_store"`
		Streams    []struct {
			Stream       string            `yaml:"stream"`
			SourceURL    string            `yaml:"source_url"`
			TargetURL    string            `yaml:"target_url"`
			SourceChoria map[string]string `yaml:"source_choria"`
		} `yaml:"streams"`
		Heartbeats struct {
			Subjects []map[string]string `yaml:"subjects"`
		} `yaml:"heartbeats"`
	}
	require.NoError(t, yaml.Unmarshal(read(t, out, fileReplicatorConfig), &sr))
	require.Len(t, sr.Streams, 1)
	assert.Equal(t, "CHORIA_REGISTRATION", sr.Streams[0].Stream)
	assert.Equal(t, "nats://broker.choria.local:4222", sr.Streams[0].SourceURL)
	assert.Equal(t, "nats://nats.choria.local:4222", sr.Streams[0].TargetURL)
	assert.Equal(t, "/etc/stream-replicator/choria.seed", sr.Streams[0].SourceChoria["seed_file"])
	assert.Equal(t, "choria.node_metadata._monitor", sr.Heartbeats.Subjects[0]["subject"])

	var aaa struct {
		Port     int                      `json:"port"`
		Users    []any                    `json:"-"`
		Auditor  struct{ Logfile string } `json:"logfile_auditor"`
		Userlist struct {
			Users []struct {
				Username          string                   `json:"username"`
				Password          string                   `json:"password"`
				OPAPolicyFile     string                   `json:"opa_policy_file"`
				BrokerPermissions tokens.ClientPermissions `json:"broker_permissions"`
			} `json:"users"`
		} `json:"userlist_authenticator"`
	}
	require.NoError(t, json.Unmarshal(read(t, out, fileAAAConfig), &aaa))
	assert.Equal(t, 8080, aaa.Port)
	assert.Equal(t, "/var/lib/aaasvc/signer_audit.json", aaa.Auditor.Logfile)
	require.Len(t, aaa.Userlist.Users, 3)
	byName := map[string]int{}
	for i, u := range aaa.Userlist.Users {
		byName[u.Username] = i
		assert.NoError(t, bcrypt.CompareHashAndPassword([]byte(u.Password), []byte("secret")), u.Username)
		assert.Error(t, bcrypt.CompareHashAndPassword([]byte(u.Password), []byte("wrong")), u.Username)
	}
	admin := aaa.Userlist.Users[byName["admin"]]
	assert.Equal(t, tokens.ClientPermissions{OrgAdmin: true, SystemUser: true, SignedFleetManagement: true}, admin.BrokerPermissions)
	assert.Equal(t, "/etc/aaasvc/admin.rego", admin.OPAPolicyFile)
	streams := aaa.Userlist.Users[byName["streams"]]
	assert.Equal(t, tokens.ClientPermissions{StreamsAdmin: true}, streams.BrokerPermissions)
	assert.Empty(t, streams.OPAPolicyFile)
	choria := aaa.Userlist.Users[byName["choria"]]
	assert.Equal(t, tokens.ClientPermissions{SignedFleetManagement: true, EventsViewer: true}, choria.BrokerPermissions)
	assert.Equal(t, topo.Users[2].OPAPolicy, string(read(t, out, "aaa/choria.rego")))
}

func TestFileModesAndDirectories(t *testing.T) {
	out, _ := bootstrap(t, Options{})
	var files int
	require.NoError(t, filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		require.NoError(t, err)
		st, err := os.Stat(p)
		require.NoError(t, err)
		if d.IsDir() {
			if p != out {
				assert.Equal(t, os.FileMode(0o700), st.Mode().Perm(), p)
			}
			return nil
		}
		files++
		name := d.Name()
		switch {
		case strings.HasSuffix(name, ".public"), strings.HasSuffix(name, ".crt"):
			assert.Equal(t, os.FileMode(0o644), st.Mode().Perm(), p)
		default:
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), p)
		}
		return nil
	}))
	assert.Equal(t, len(artefacts(defaultTopology(t), false)), files)
}

func TestRolesHoldOnlyTheirOwnSecrets(t *testing.T) {
	out, _ := bootstrap(t, Options{})
	issuerSeed := string(read(t, out, fileIssuerSeed))
	userPw := string(read(t, out, userPasswordFile("admin")))
	for _, dir := range Dirs(defaultTopology(t)) {
		if dir == DirIssuer || dir == DirOperator {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(out, dir))
		require.NoError(t, err)
		for _, e := range entries {
			b := read(t, out, dir+"/"+e.Name())
			assert.NotContains(t, string(b), issuerSeed, "%s/%s holds the issuer seed", dir, e.Name())
			assert.NotContains(t, string(b), userPw, "%s/%s holds a login password", dir, e.Name())
		}
	}
}

func snapshot(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	require.NoError(t, filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(out, p)
		m[filepath.ToSlash(rel)] = string(b)
		return err
	}))
	return m
}

func TestIdempotence(t *testing.T) {
	topo := defaultTopology(t)
	out, first := bootstrap(t, Options{Topology: topo})
	assert.Len(t, first.Created, len(artefacts(topo, false)))
	before := snapshot(t, out)

	again, err := Run(Options{Topology: topo, Out: out})
	require.NoError(t, err)
	assert.Empty(t, again.Created)
	assert.Empty(t, again.Replaced)
	assert.Len(t, again.Kept, len(before))
	assert.Equal(t, before, snapshot(t, out), "a second run must change nothing")

	for _, rel := range []string{"broker/broker.jwt", fileAAAConfig, "broker/tls.crt", "client/plugin-signer.public"} {
		require.NoError(t, os.Remove(filepath.Join(out, rel)))
		res, err := Run(Options{Topology: topo, Out: out})
		require.NoError(t, err, rel)
		assert.Equal(t, []string{rel}, res.Created, "only the deleted file comes back")
		after := snapshot(t, out)
		for k, v := range before {
			if k != rel {
				assert.Equal(t, v, after[k], "%s changed when %s was restored", k, rel)
			}
		}
		assert.NotEmpty(t, after[rel])
		before = after
	}
	// the restored token is still valid for the kept key
	c, err := tokens.ParseServerToken(before["broker/broker.jwt"], issuerKey(t, out))
	require.NoError(t, err)
	assert.Equal(t, seedPublic(t, out, "broker/broker.seed"), c.PublicKey)
}

func TestRotation(t *testing.T) {
	topo := defaultTopology(t)
	out, _ := bootstrap(t, Options{Topology: topo})
	before := snapshot(t, out)

	res, err := Run(Options{Topology: topo, Out: out, Rotate: []string{"broker"}})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"broker/broker.seed", "broker/broker.jwt", "broker/tls.key", "broker/tls.crt", brokerFile("broker", brokerConfig)}, res.Replaced)
	after := snapshot(t, out)
	assert.NotEqual(t, before["broker/broker.seed"], after["broker/broker.seed"])
	assert.Equal(t, before[fileIssuerSeed], after[fileIssuerSeed])
	assert.Equal(t, before["aaa/chain-signer.jwt"], after["aaa/chain-signer.jwt"])

	// rotating the issuer re-issues every token for the existing keys
	res, err = Run(Options{Topology: topo, Out: out, Rotate: []string{"issuer"}})
	require.NoError(t, err)
	assert.Contains(t, res.Replaced, "aaa/chain-signer.jwt")
	assert.Contains(t, res.Replaced, fileProvisioningJWT)
	assert.Contains(t, res.Replaced, brokerFile("broker", brokerConfig))
	assert.NotContains(t, res.Replaced, "aaa/chain-signer.seed")
	assert.NotContains(t, res.Replaced, fileSystemPassword)
	rotated := snapshot(t, out)
	assert.NotEqual(t, after[fileIssuerSeed], rotated[fileIssuerSeed])
	assert.Equal(t, after["aaa/chain-signer.seed"], rotated["aaa/chain-signer.seed"])
	_, err = tokens.ParseClientIDToken(rotated["aaa/chain-signer.jwt"], issuerKey(t, out), true)
	assert.NoError(t, err)

	_, err = Run(Options{Topology: topo, Out: out, Rotate: []string{"nosuchrole"}})
	assert.ErrorContains(t, err, `unknown role "nosuchrole"`)
}

func TestRender(t *testing.T) {
	topo := defaultTopology(t)
	out, _ := bootstrap(t, Options{Topology: topo})
	before := snapshot(t, out)
	res, err := Run(Options{Topology: topo, Out: out, Render: true, Timings: topology.TimingsLab, HelperCommand: "/opt/bin/choria-provision-helper"})
	require.NoError(t, err)
	assert.Contains(t, res.Replaced, fileProvisionerConfig)
	assert.NotContains(t, res.Replaced, "broker/broker.seed")
	after := snapshot(t, out)
	assert.Contains(t, after[fileProvisionerConfig], "helper: /opt/bin/choria-provision-helper --config")
	assert.Equal(t, before[fileSystemPassword], after[fileSystemPassword])
	assert.Equal(t, before["broker/broker.jwt"], after["broker/broker.jwt"])
}

func TestBadInput(t *testing.T) {
	topo := defaultTopology(t)

	t.Run("missing seed behind an existing token", func(t *testing.T) {
		out, _ := bootstrap(t, Options{Topology: topo})
		before := snapshot(t, out)
		require.NoError(t, os.Remove(filepath.Join(out, "broker/broker.seed")))
		_, err := Run(Options{Topology: topo, Out: out})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "broker/broker.jwt exists but")
		assert.Contains(t, err.Error(), "--rotate broker")
		delete(before, "broker/broker.seed")
		assert.Equal(t, before, snapshot(t, out), "nothing may be written after a refused run")
	})

	t.Run("missing issuer with credentials signed by it", func(t *testing.T) {
		out, _ := bootstrap(t, Options{Topology: topo})
		require.NoError(t, os.Remove(filepath.Join(out, fileIssuerSeed)))
		_, err := Run(Options{Topology: topo, Out: out})
		assert.ErrorContains(t, err, "issuer/issuer.public exists but")
		_, err = os.Stat(filepath.Join(out, fileIssuerSeed))
		assert.True(t, os.IsNotExist(err), "no new issuer may be made silently")
	})

	t.Run("truncated seed from a half-written run", func(t *testing.T) {
		out, _ := bootstrap(t, Options{Topology: topo})
		p := filepath.Join(out, "aaa/request-signer.seed")
		require.NoError(t, os.WriteFile(p, []byte("abcd"), 0o600))
		_, err := Run(Options{Topology: topo, Out: out})
		assert.ErrorContains(t, err, p+" is not a hex encoded ed25519 seed")
		b, _ := os.ReadFile(p)
		assert.Equal(t, "abcd", string(b), "the bad file is left for the operator")
	})

	t.Run("token for another key", func(t *testing.T) {
		out, _ := bootstrap(t, Options{Topology: topo})
		jwt := read(t, out, "replicator/choria.jwt")
		require.NoError(t, os.WriteFile(filepath.Join(out, "provisioner/signer.jwt"), jwt, 0o600))
		_, err := Run(Options{Topology: topo, Out: out})
		assert.ErrorContains(t, err, "signer.jwt was not issued for the key beside it")
	})

	t.Run("stale temporary files are removed", func(t *testing.T) {
		out, _ := bootstrap(t, Options{Topology: topo})
		stale := filepath.Join(out, "broker", ".broker.seed.tmp-12345")
		require.NoError(t, os.WriteFile(stale, []byte("half"), 0o600))
		res, err := Run(Options{Topology: topo, Out: out})
		require.NoError(t, err)
		assert.Equal(t, []string{"broker/.broker.seed.tmp-12345"}, res.Cleaned)
		_, err = os.Stat(stale)
		assert.True(t, os.IsNotExist(err))
	})

	t.Run("output is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(f, nil, 0o600))
		_, err := Run(Options{Topology: topo, Out: f})
		assert.ErrorContains(t, err, "creating output directory")
	})

	t.Run("unwritable output", func(t *testing.T) {
		if os.Geteuid() == 0 {
			// root ignores permission bits; a read-only bind mount would need mount privileges we test elsewhere
			d := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(d, "broker"), []byte("not a dir"), 0o600))
			_, err := Run(Options{Topology: topo, Out: d})
			require.Error(t, err)
			return
		}
		d := t.TempDir()
		require.NoError(t, os.Chmod(d, 0o500))
		_, err := Run(Options{Topology: topo, Out: d})
		assert.ErrorContains(t, err, "is not writable")
	})

	t.Run("unknown timings", func(t *testing.T) {
		_, err := Run(Options{Topology: topo, Out: t.TempDir(), Timings: "fast"})
		assert.ErrorContains(t, err, `unknown timings profile "fast"`)
	})
}

func TestDemoSecretsAndRandomSecrets(t *testing.T) {
	out, _ := bootstrap(t, Options{DemoSecrets: true})
	assert.Equal(t, "s3cret", string(read(t, out, fileProvisioningToken)))
	assert.Equal(t, "secret", string(read(t, out, userPasswordFile("choria"))))

	a, _ := bootstrap(t, Options{})
	b, _ := bootstrap(t, Options{})
	for _, f := range []string{fileProvisioningToken, fileSystemPassword, userPasswordFile("admin")} {
		x, y := string(read(t, a, f)), string(read(t, b, f))
		assert.Len(t, x, 24)
		assert.NotEqual(t, x, y, "%s must be random", f)
		assert.NotEqual(t, "s3cret", x)
	}
}

// Output names the files other packages read: each exists after a run
// and holds what its name says.
func TestOutputNamesWhatItWrote(t *testing.T) {
	topo := defaultTopology(t)
	out, _ := bootstrap(t, Options{Topology: topo})
	o := Output{Dir: out}
	pub, err := os.ReadFile(o.IssuerPublic())
	require.NoError(t, err)
	assert.Equal(t, issuerKey(t, out), ed25519.PublicKey(must(hex.DecodeString(string(pub)))))
	_, err = parseSeed(must(os.ReadFile(o.PluginSignerSeed())))
	assert.NoError(t, err, "the plugin signer seed is a seed")
	jwt := string(must(os.ReadFile(o.ProvisioningJWT())))
	assert.Len(t, strings.Split(jwt, "."), 3, "provisioning.jwt is a JWT")
	token := must(os.ReadFile(o.ProvisioningToken()))
	assert.NotEmpty(t, token)
	for _, u := range topo.UserNames() {
		pw, err := o.UserPassword(u)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, len(pw), 16, "the password of %s", u)
	}
	_, err = o.UserPassword("nobody")
	assert.ErrorContains(t, err, "reading the password of nobody")
	for _, d := range Dirs(topo) {
		st, err := os.Stat(o.Role(d))
		require.NoError(t, err)
		assert.True(t, st.IsDir(), d)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
