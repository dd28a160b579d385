package bootstrap

import (
	"fmt"
	"io"
)

// WriteSummary tells the operator what a run did and where the secrets they
// need are; it never prints a secret.
func WriteSummary(w io.Writer, out string, t interface{ UserNames() []string }, res *Result) {
	for _, p := range res.Cleaned {
		fmt.Fprintf(w, "removed   %s (left by an interrupted run)\n", p)
	}
	for _, p := range res.Created {
		fmt.Fprintf(w, "created   %s\n", p)
	}
	for _, p := range res.Replaced {
		fmt.Fprintf(w, "replaced  %s\n", p)
	}
	switch {
	case len(res.Created)+len(res.Replaced) == 0:
		fmt.Fprintf(w, "Everything in %s is present and valid: kept all %d files, changed nothing.\n", out, len(res.Kept))
	default:
		fmt.Fprintf(w, "%s: created %d, replaced %d, kept %d existing files unchanged.\n", out, len(res.Created), len(res.Replaced), len(res.Kept))
	}
	o := Output{Dir: out}
	fmt.Fprintln(w, "Login passwords (readable by you only):")
	for _, u := range t.UserNames() {
		fmt.Fprintf(w, "  %-10s %s\n", u, o.UserPasswordFile(u))
	}
	fmt.Fprintf(w, "Provisioning token: %s\n", o.ProvisioningToken())
}
