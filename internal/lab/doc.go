// Package lab runs the whole deployment on Linux namespaces (netlab), each
// service under the conditions its NixOS unit gives it. Its files follow
// one bring-up:
//
//   - programs.go finds the programs; plan.go lays the topology out as
//     hosts, bind mounts and processes;
//   - staging.go writes what the hosts hold before they start (machines,
//     provisioning.jwt, service accounts);
//   - lifecycle.go brings the lab up in order and down again, and
//     readiness.go waits for each service; servers.go starts the servers
//     a window at a time and waits until every one answers;
//   - state.go publishes lab.json for the other commands, report.go prints
//     from it, login.go answers choria login's prompts, bench.go measures
//     bring-ups;
//   - layout.go names every path of a lab directory.
//
// Processes are run by internal/supervisor.
package lab
