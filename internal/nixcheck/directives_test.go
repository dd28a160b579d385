package nixcheck

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// directiveSet is a set of systemd unit file directive names.
type directiveSet map[string]bool

func directives(groups ...[]string) directiveSet {
	s := directiveSet{}
	for _, g := range groups {
		for _, name := range g {
			s[name] = true
		}
	}
	return s
}

// prefixed returns each name with each prefix.
func prefixed(prefixes []string, names ...string) []string {
	var out []string
	for _, p := range prefixes {
		for _, n := range names {
			out = append(out, p+n)
		}
	}
	return out
}

// The directives systemd 258 (what NixOS 26.05 runs) takes in a [Service]
// section: those of systemd.service(5), systemd.exec(5), systemd.kill(5) and
// systemd.resource-control(5), as its unit file parser lists them
// (src/core/load-fragment-gperf.gperf.in). Left out are the directives it
// only warns about and ignores: Capabilities=, SysVStartPriority=,
// BusPolicy=, NetClass=, and those of cgroup v1 that 258 dropped with it
// (CPUAccounting=, CPUShares=, StartupCPUShares=, MemoryLimit=, BlockIO*=).
var serviceDirectives = directives(
	// systemd.service(5), [Service]
	[]string{
		"Type", "ExitType", "RemainAfterExit", "GuessMainPID", "PIDFile", "BusName",
		"ExecStart", "ExecStartPre", "ExecStartPost", "ExecCondition", "ExecReload", "ExecStop", "ExecStopPost",
		"RestartSec", "RestartSteps", "RestartMaxDelaySec", "TimeoutStartSec", "TimeoutStopSec", "TimeoutAbortSec",
		"TimeoutSec", "TimeoutStartFailureMode", "TimeoutStopFailureMode", "RuntimeMaxSec",
		"RuntimeRandomizedExtraSec", "WatchdogSec", "Restart", "RestartMode", "SuccessExitStatus",
		"RestartPreventExitStatus", "RestartForceExitStatus", "RootDirectoryStartOnly", "NonBlocking",
		"NotifyAccess", "Sockets", "FileDescriptorStoreMax", "FileDescriptorStorePreserve",
		"USBFunctionDescriptors", "USBFunctionStrings", "OOMPolicy", "OpenFile", "ReloadSignal",
		"PermissionsStartOnly",
		// [Unit] directives the parser still takes in [Service], for compatibility
		"StartLimitInterval", "StartLimitBurst", "StartLimitAction", "FailureAction", "RebootArgument",
	},
	// systemd.exec(5)
	[]string{
		"ExecSearchPath", "WorkingDirectory", "RootDirectory", "RootImage", "RootImageOptions", "RootEphemeral",
		"RootHash", "RootHashSignature", "RootVerity", "RootImagePolicy", "MountImagePolicy",
		"ExtensionImagePolicy", "MountAPIVFS", "BindLogSockets", "ProtectProc", "ProcSubset", "BindPaths",
		"BindReadOnlyPaths", "MountImages", "ExtensionImages", "ExtensionDirectories",
		"User", "Group", "DynamicUser", "SupplementaryGroups", "SetLoginEnvironment", "PAMName",
		"CapabilityBoundingSet", "AmbientCapabilities", "NoNewPrivileges", "SecureBits",
		"SELinuxContext", "AppArmorProfile", "SmackProcessLabel",
		"LimitCPU", "LimitFSIZE", "LimitDATA", "LimitSTACK", "LimitCORE", "LimitRSS", "LimitNOFILE", "LimitAS",
		"LimitNPROC", "LimitMEMLOCK", "LimitLOCKS", "LimitSIGPENDING", "LimitMSGQUEUE", "LimitNICE",
		"LimitRTPRIO", "LimitRTTIME", "UMask", "CoredumpFilter", "KeyringMode", "OOMScoreAdjust",
		"TimerSlackNSec", "Personality", "IgnoreSIGPIPE",
		"Nice", "CPUSchedulingPolicy", "CPUSchedulingPriority", "CPUSchedulingResetOnFork", "CPUAffinity",
		"NUMAPolicy", "NUMAMask", "IOSchedulingClass", "IOSchedulingPriority",
		"ProtectSystem", "ProtectHome", "RuntimeDirectory", "StateDirectory", "CacheDirectory", "LogsDirectory",
		"ConfigurationDirectory", "RuntimeDirectoryMode", "StateDirectoryMode", "CacheDirectoryMode",
		"LogsDirectoryMode", "ConfigurationDirectoryMode", "RuntimeDirectoryPreserve",
		"StateDirectoryQuota", "CacheDirectoryQuota", "LogsDirectoryQuota",
		"StateDirectoryAccounting", "CacheDirectoryAccounting", "LogsDirectoryAccounting", "TimeoutCleanSec",
		"ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths",
		"ReadWriteDirectories", "ReadOnlyDirectories", "InaccessibleDirectories",
		"TemporaryFileSystem", "PrivateTmp", "PrivateDevices", "PrivateNetwork", "NetworkNamespacePath",
		"PrivateIPC", "IPCNamespacePath", "MemoryKSM", "PrivatePIDs", "PrivateUsers", "ProtectHostname",
		"ProtectClock", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectControlGroups", "RestrictAddressFamilies", "RestrictFileSystems", "RestrictNamespaces",
		"DelegateNamespaces", "PrivateBPF", "BPFDelegateCommands", "BPFDelegateMaps", "BPFDelegatePrograms",
		"BPFDelegateAttachments", "LockPersonality", "MemoryDenyWriteExecute", "RestrictRealtime",
		"RestrictSUIDSGID", "RemoveIPC", "PrivateMounts", "MountFlags",
		"SystemCallFilter", "SystemCallErrorNumber", "SystemCallArchitectures", "SystemCallLog",
		"Environment", "EnvironmentFile", "PassEnvironment", "UnsetEnvironment",
		"StandardInput", "StandardOutput", "StandardError", "StandardInputText", "StandardInputData",
		"LogLevelMax", "LogExtraFields", "LogRateLimitIntervalSec", "LogRateLimitBurst", "LogFilterPatterns",
		"LogNamespace", "SyslogIdentifier", "SyslogFacility", "SyslogLevel", "SyslogLevelPrefix",
		"TTYPath", "TTYReset", "TTYVHangup", "TTYRows", "TTYColumns", "TTYVTDisallocate",
		"LoadCredential", "LoadCredentialEncrypted", "ImportCredential", "SetCredential",
		"SetCredentialEncrypted", "UtmpIdentifier", "UtmpMode",
	},
	// systemd.kill(5)
	[]string{
		"KillMode", "KillSignal", "RestartKillSignal", "SendSIGHUP", "SendSIGKILL", "FinalKillSignal",
		"WatchdogSignal",
	},
	// systemd.resource-control(5)
	[]string{
		"CPUWeight", "StartupCPUWeight", "CPUQuota", "CPUQuotaPeriodSec", "AllowedCPUs", "StartupAllowedCPUs",
		"AllowedMemoryNodes", "StartupAllowedMemoryNodes", "MemoryAccounting", "MemoryMin", "MemoryLow",
		"StartupMemoryLow", "DefaultStartupMemoryLow", "DefaultMemoryMin", "DefaultMemoryLow", "MemoryHigh",
		"StartupMemoryHigh", "MemoryMax", "StartupMemoryMax", "MemorySwapMax", "StartupMemorySwapMax",
		"MemoryZSwapMax", "StartupMemoryZSwapMax", "MemoryZSwapWriteback", "TasksAccounting", "TasksMax",
		"IOAccounting", "IOWeight", "StartupIOWeight", "IODeviceWeight", "IOReadBandwidthMax",
		"IOWriteBandwidthMax", "IOReadIOPSMax", "IOWriteIOPSMax", "IODeviceLatencyTargetSec",
		"IPAccounting", "IPAddressAllow", "IPAddressDeny", "SocketBindAllow", "SocketBindDeny",
		"RestrictNetworkInterfaces", "NFTSet", "IPIngressFilterPath", "IPEgressFilterPath", "BPFProgram",
		"DeviceAllow", "DevicePolicy", "Slice", "Delegate", "DelegateSubgroup", "DisableControllers",
		"ManagedOOMSwap", "ManagedOOMMemoryPressure", "ManagedOOMMemoryPressureLimit",
		"ManagedOOMMemoryPressureDurationSec", "ManagedOOMPreference", "MemoryPressureWatch",
		"MemoryPressureThresholdSec", "CoredumpReceive",
	},
)

// The directives of a [Unit] section in systemd 258: systemd.unit(5), from
// the same parser table, less the obsolete RequiresOverridable=,
// RequisiteOverridable= and IgnoreOnSnapshot=.
var unitDirectives = directives(
	[]string{
		"Description", "Documentation", "Wants", "Requires", "Requisite", "BindsTo", "PartOf", "Upholds",
		"Conflicts", "Before", "After", "OnFailure", "OnSuccess", "PropagatesReloadTo", "ReloadPropagatedFrom",
		"PropagatesStopTo", "StopPropagatedFrom", "JoinsNamespaceOf", "RequiresMountsFor", "WantsMountsFor",
		"OnSuccessJobMode", "OnFailureJobMode", "IgnoreOnIsolate", "StopWhenUnneeded", "RefuseManualStart",
		"RefuseManualStop", "AllowIsolate", "DefaultDependencies", "SurviveFinalKillSignal", "CollectMode",
		"FailureAction", "SuccessAction", "FailureActionExitStatus", "SuccessActionExitStatus",
		"JobTimeoutSec", "JobRunningTimeoutSec", "JobTimeoutAction", "JobTimeoutRebootArgument",
		"StartLimitIntervalSec", "StartLimitBurst", "StartLimitAction", "RebootArgument", "SourcePath",
		// older names the parser still takes
		"BindTo", "PropagateReloadTo", "PropagateReloadFrom", "OnFailureIsolate", "StartLimitInterval",
	},
	prefixed([]string{"Condition", "Assert"},
		"PathExists", "PathExistsGlob", "PathIsDirectory", "PathIsSymbolicLink", "PathIsMountPoint",
		"PathIsReadWrite", "PathIsEncrypted", "DirectoryNotEmpty", "FileNotEmpty", "FileIsExecutable",
		"NeedsUpdate", "FirstBoot", "Architecture", "Virtualization", "Host", "KernelCommandLine",
		"KernelVersion", "Version", "Credential", "Security", "Capability", "ACPower", "Memory", "CPUFeature",
		"CPUs", "Environment", "User", "Group", "ControlGroupController", "OSRelease", "MemoryPressure",
		"CPUPressure", "IOPressure", "KernelModuleLoaded"),
	[]string{"ConditionFirmware"},
)

// unknown returns, sorted, the keys that are not directives of the set.
// Keys starting with "X-" are extensions, which systemd ignores.
func (s directiveSet) unknown(keys []string) []string {
	var bad []string
	for _, k := range keys {
		if !s[k] && !strings.HasPrefix(k, "X-") {
			bad = append(bad, k)
		}
	}
	slices.Sort(bad)
	return bad
}

// closest returns the directive of the set nearest to key, if it is a
// likely misspelling of it (a difference in case, or at most two edits).
func (s directiveSet) closest(key string) string {
	best, bestDist := "", 3
	for name := range s {
		if strings.EqualFold(name, key) {
			return name
		}
		if d := editDistance(name, key); d < bestDist || (d == bestDist && name < best) {
			best, bestDist = name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// unitSections is what the evaluation reports of a systemd service: its
// [Service] settings and, where the stand-in declares them, its [Unit] ones.
type unitSections struct {
	ServiceConfig map[string]json.RawMessage `json:"serviceConfig"`
	UnitConfig    map[string]json.RawMessage `json:"unitConfig"`
	// Environment becomes the [Service] section's Environment= lines
	Environment map[string]*string `json:"environment"`
}

// configUnits is the systemd part of what the evaluation reports of a
// configuration.
type configUnits struct {
	Systemd struct {
		Services map[string]unitSections `json:"services"`
	} `json:"systemd"`
}

// The directives systemd 258 still parses but ignores, with a warning.
var ignoredDirectives = directives([]string{
	"Capabilities", "SysVStartPriority", "BusPolicy", "NetClass", "IgnoreOnSnapshot",
	"CPUAccounting", "CPUShares", "StartupCPUShares", "MemoryLimit", "BlockIOAccounting", "BlockIOWeight",
	"StartupBlockIOWeight", "BlockIODeviceWeight", "BlockIOReadBandwidth", "BlockIOWriteBandwidth",
})

type unitFileSection struct {
	option, name, manPages string
	known                  directiveSet
	keys                   func(unitSections) map[string]json.RawMessage
}

var unitFileSections = []unitFileSection{
	{"serviceConfig", "[Service]", "systemd.service(5), systemd.exec(5), systemd.kill(5), systemd.resource-control(5)",
		serviceDirectives, func(u unitSections) map[string]json.RawMessage { return u.ServiceConfig }},
	{"unitConfig", "[Unit]", "systemd.unit(5)",
		unitDirectives, func(u unitSections) map[string]json.RawMessage { return u.UnitConfig }},
}

// hint says what key, not a directive of sec, is likely to be.
func (sec unitFileSection) hint(key string) string {
	for _, other := range unitFileSections {
		if other.name != sec.name && other.known[key] {
			return fmt.Sprintf("; it is a directive of the %s section, set with %s", other.name, other.option)
		}
	}
	if ignoredDirectives[key] {
		return "; systemd 258 ignores it, with a warning"
	}
	if c := sec.known.closest(key); c != "" {
		return fmt.Sprintf("; did you mean %s?", c)
	}
	return ""
}

// directiveErrors names every serviceConfig key of the services that is not
// a [Service] directive, and every unitConfig key that is not a [Unit] one.
func directiveErrors(where string, services map[string]unitSections) []string {
	var errs []string
	for _, name := range slices.Sorted(maps.Keys(services)) {
		for _, sec := range unitFileSections {
			for _, k := range sec.known.unknown(slices.Collect(maps.Keys(sec.keys(services[name])))) {
				errs = append(errs, fmt.Sprintf("%s: systemd.services.%s.%s.%s is not a directive of a %s section in systemd 258 (%s)%s",
					where, name, sec.option, k, sec.name, sec.manPages, sec.hint(k)))
			}
		}
	}
	return errs
}

// TestServiceDirectives checks that every serviceConfig key our modules and
// the VM test's nodes give a systemd service is a directive systemd takes in
// a [Service] section (the module system takes any key there, systemd only
// warns in the journal and ignores the setting), and every unitConfig key
// one of a [Unit] section.
func TestServiceDirectives(t *testing.T) {
	res := evalModules(t)

	var modules map[string]configUnits
	require.NoError(t, json.Unmarshal(res["modules"], &modules))
	require.NotEmpty(t, modules, "the evaluation reports no module scenarios")

	var vt vmTest
	require.NoError(t, json.Unmarshal(res["walkthrough"], &vt))
	require.NotEmpty(t, vt.Nodes, "the evaluation reports no VM test nodes")

	checked := 0
	for scenario, m := range modules {
		checked += len(m.Systemd.Services)
		for _, e := range directiveErrors("modules."+scenario, m.Systemd.Services) {
			t.Error(e)
		}
	}
	for node, n := range vt.Nodes {
		services := map[string]unitSections{}
		for name, raw := range n.Systemd.Services {
			var u unitSections
			require.NoError(t, json.Unmarshal(raw, &u), "walkthrough.nodes.%s: systemd.services.%s", node, name)
			services[name] = u
		}
		checked += len(services)
		for _, e := range directiveErrors("walkthrough.nodes."+node, services) {
			t.Error(e)
		}
	}
	assert.Positive(t, checked, "no systemd service was checked")
}

// TestDirectiveChecker shows the check above fails on what systemd would
// ignore: misspellings, a [Unit] directive in [Service], and directives
// systemd 258 no longer applies.
func TestDirectiveChecker(t *testing.T) {
	raw := func(keys ...string) map[string]json.RawMessage {
		m := map[string]json.RawMessage{}
		for _, k := range keys {
			m[k] = json.RawMessage(`true`)
		}
		return m
	}
	cases := []struct {
		name     string
		services map[string]unitSections
		want     []string
	}{
		{"valid", map[string]unitSections{
			"demo": {
				ServiceConfig: raw("Type", "ExecStart", "ExecStartPre", "User", "DynamicUser", "LoadCredential",
					"StateDirectory", "RestrictAddressFamilies", "SystemCallFilter", "KillMode", "MemoryMax",
					"X-Custom", "StartLimitBurst"),
				UnitConfig: raw("Description", "After", "StartLimitIntervalSec", "ConditionPathExists",
					"AssertKernelModuleLoaded"),
			},
		}, nil},
		{"misspelt", map[string]unitSections{
			"demo": {ServiceConfig: raw("Restrat", "ExecStart", "Protectsystem")},
		}, []string{
			"where: systemd.services.demo.serviceConfig.Protectsystem is not a directive of a [Service] section in systemd 258 (systemd.service(5), systemd.exec(5), systemd.kill(5), systemd.resource-control(5)); did you mean ProtectSystem?",
			"where: systemd.services.demo.serviceConfig.Restrat is not a directive of a [Service] section in systemd 258 (systemd.service(5), systemd.exec(5), systemd.kill(5), systemd.resource-control(5)); did you mean Restart?",
		}},
		{"unit directive in [Service]", map[string]unitSections{
			"demo": {ServiceConfig: raw("StartLimitIntervalSec", "After")},
		}, []string{
			"where: systemd.services.demo.serviceConfig.After is not a directive of a [Service] section in systemd 258 (systemd.service(5), systemd.exec(5), systemd.kill(5), systemd.resource-control(5)); it is a directive of the [Unit] section, set with unitConfig",
			"where: systemd.services.demo.serviceConfig.StartLimitIntervalSec is not a directive of a [Service] section in systemd 258 (systemd.service(5), systemd.exec(5), systemd.kill(5), systemd.resource-control(5)); it is a directive of the [Unit] section, set with unitConfig",
		}},
		{"ignored since cgroup v1 went", map[string]unitSections{
			"demo": {ServiceConfig: raw("CPUAccounting", "MemoryLimit")},
		}, []string{
			"where: systemd.services.demo.serviceConfig.CPUAccounting is not a directive of a [Service] section in systemd 258 (systemd.service(5), systemd.exec(5), systemd.kill(5), systemd.resource-control(5)); systemd 258 ignores it, with a warning",
			"where: systemd.services.demo.serviceConfig.MemoryLimit is not a directive of a [Service] section in systemd 258 (systemd.service(5), systemd.exec(5), systemd.kill(5), systemd.resource-control(5)); systemd 258 ignores it, with a warning",
		}},
		{"service directive in [Unit]", map[string]unitSections{
			"b": {UnitConfig: raw("Restart")},
			"a": {UnitConfig: raw("ConditionPathExist")},
		}, []string{
			"where: systemd.services.a.unitConfig.ConditionPathExist is not a directive of a [Unit] section in systemd 258 (systemd.unit(5)); did you mean ConditionPathExists?",
			"where: systemd.services.b.unitConfig.Restart is not a directive of a [Unit] section in systemd 258 (systemd.unit(5)); it is a directive of the [Service] section, set with serviceConfig",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, directiveErrors("where", c.services))
		})
	}
}

// evalScenario evaluates the `scenario` attribute of testdata/eval-modules.nix
// for a Nix function from the flake's nixosModules to a list of modules, and
// returns its JSON, or an error with what the evaluation printed.
func evalScenario(t *testing.T, scenario string) (json.RawMessage, error) {
	t.Helper()
	return nixEval(t, "internal/nixcheck/testdata/eval-modules.nix", "--arg", "nixpkgsLib", nixpkgsLib(t, "no module evaluation"),
		"--arg", "root", "./.", "--arg", "scenario", scenario, "-A", "scenario")
}

// TestEvaluationRejectsMistakes evaluates small configurations with a
// misspelt option or a value of the wrong type, and expects each to fail
// as it would in NixOS: the stand-in declarations carry nixpkgs' types.
func TestEvaluationRejectsMistakes(t *testing.T) {
	// What a role module needs to evaluate.
	const broker = `m.choria-broker { services.choria-broker.enable = true; networking.hostName = "broker"; }`

	t.Run("valid", func(t *testing.T) {
		out, err := evalScenario(t, `m: [ `+broker+` ]`)
		require.NoError(t, err)
		var cfg configUnits
		require.NoError(t, json.Unmarshal(out, &cfg))
		require.Contains(t, cfg.Systemd.Services, "choria-broker")
		assert.Empty(t, directiveErrors("scenario", cfg.Systemd.Services))
	})

	cases := []struct {
		name, modules, want string
	}{
		{"misspelt role option", broker + ` { services.choria-broker.openFirewal = true; }`,
			"The option `services.choria-broker.openFirewal' does not exist"},
		{"misspelt NixOS option", `{ networking.firewall.allowedTCPPort = [ 80 ]; }`,
			"The option `networking.firewall.allowedTCPPort' does not exist"},
		{"misspelt service option", `{ systemd.services.demo.wantedby = [ "multi-user.target" ]; }`,
			"The option `systemd.services.demo.wantedby' does not exist"},
		{"misspelt user option", `{ users.users.demo = { isSystemuser = true; group = "demo"; }; }`,
			"The option `users.users.demo.isSystemuser' does not exist"},
		{"port out of range", `{ networking.firewall.allowedTCPPorts = [ 70000 ]; }`,
			"is not of type `16 bit unsigned integer"},
		{"port as a string", `{ services.nats.port = "4222"; }`,
			"A definition for option `services.nats.port' is not of type `16 bit unsigned integer"},
		{"package as a string", `{ environment.systemPackages = [ "natscli" ]; }`,
			"is not of type `package'"},
		{"host name with a domain", `{ networking.hostName = "broker.example.net"; }`,
			"A definition for option `networking.hostName' is not of type `string matching the pattern"},
		{"prefix length", `{ networking.interfaces.eth1.ipv4.addresses = [ { address = "10.0.0.1"; prefixLength = 33; } ]; }`,
			"prefixLength' is not of type `integer between 0 and 32 (both inclusive)'"},
		{"not a unit name", `{ systemd.services.demo.after = [ "network-online" ]; }`,
			"is not of type `string matching the pattern [a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)'"},
		{"service type", `{ systemd.services.demo.serviceConfig.Type = "one-shot"; }`,
			"Systemd Service field `Type' cannot have value `one-shot'"},
		{"conflicting settings", `{ systemd.services.demo.serviceConfig.User = "a"; } { systemd.services.demo.serviceConfig.User = "b"; }`,
			"The option `systemd.services.demo.serviceConfig.User' has conflicting definition values"},
		{"environment list", `{ systemd.services.demo.environment.PATH = [ "/bin" ]; }`,
			"A definition for option `systemd.services.demo.environment.PATH' is not of type"},
		{"etc source not a path", `{ environment.etc."choria/client.conf".source = "client.conf"; }`,
			"is not of type `absolute path'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := evalScenario(t, `m: [ `+c.modules+` ]`)
			require.Error(t, err, "the evaluation of %s succeeded:\n%s", c.modules, out)
			assert.Contains(t, err.Error(), c.want)
		})
	}

	// The module system takes any serviceConfig key; TestServiceDirectives
	// is what catches a misspelt one.
	t.Run("misspelt directive", func(t *testing.T) {
		out, err := evalScenario(t, `m: [ { systemd.services.demo.serviceConfig = { Restrat = "always"; StartLimitIntervalSec = 60; }; } ]`)
		require.NoError(t, err)
		var cfg configUnits
		require.NoError(t, json.Unmarshal(out, &cfg))
		errs := directiveErrors("scenario", cfg.Systemd.Services)
		require.Len(t, errs, 2, "%q", errs)
		assert.Contains(t, errs[0], "systemd.services.demo.serviceConfig.Restrat is not a directive of a [Service] section")
		assert.Contains(t, errs[0], "did you mean Restart?")
		assert.Contains(t, errs[1], "systemd.services.demo.serviceConfig.StartLimitIntervalSec is not a directive of a [Service] section")
		assert.Contains(t, errs[1], "it is a directive of the [Unit] section, set with unitConfig")
	})
}
