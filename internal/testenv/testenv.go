// Package testenv lets tests say what they need from the machine. A test
// whose need is missing skips in one line, except with CI=true, where
// nothing that proves a claim may skip: there it fails, naming what is
// missing.
package testenv

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// InCI tells whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test because something it needs is missing, or fails
// it in CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI=true, so this test may not skip: %s", msg)
	}
	t.Skip("skipping: " + msg)
}

// RequireRoot needs the test to run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root")
	}
}

// RequireTool needs a program on PATH and returns its path.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not on PATH", name)
	}
	return p
}

// Nobody returns the uid and gid of the unprivileged user nobody.
func Nobody(t testing.TB) (uint32, uint32) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		return 65534, 65534
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(uid), uint32(gid)
}

// RunTestAsNobody re-runs one test of this test binary as nobody and
// returns its output, failing when it fails. Root can do anything, so a
// refusal needs a real unprivileged process; the binary is copied where
// nobody can execute it.
func RunTestAsNobody(t testing.TB, test string, env ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nobody-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(os.Args[0]))
	if err := CopyExecutable(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	uid, gid := Nobody(t)
	cmd := exec.Command(bin, "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s as nobody failed: %v\n%s", test, err, out)
	}
	return string(out)
}

// CopyExecutable copies the program from into a new file to, mode 0755.
func CopyExecutable(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ModuleRoot is the directory of this repository's go.mod, found from the
// test's working directory up.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod in the test's directory or above it")
		}
		dir = parent
	}
}

// Build builds packages of this module, named as from its root
// ("./cmd/requests", "./cmd/..."), into dir as pkgs/choria-reference.nix
// ships them (static, stripped: the requests agent the lab packs is then
// the size the Nix build's is), and fails the test when they do not build.
func Build(t testing.TB, dir string, pkgs ...string) {
	t.Helper()
	cmd := exec.Command(RequireTool(t, "go"), append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", dir + "/"}, pkgs...)...)
	cmd.Dir = ModuleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
}

// BuildCommand builds one command of this module ("./cmd/requests") into a
// temporary directory of the test and returns the program's path.
func BuildCommand(t testing.TB, pkg string) string {
	t.Helper()
	dir := t.TempDir()
	Build(t, dir, pkg)
	return filepath.Join(dir, path.Base(pkg))
}
