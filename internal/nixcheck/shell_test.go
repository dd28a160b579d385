package nixcheck

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A call is one simple command of a shell script: the program (or builtin,
// or function) it names and its arguments, quotes removed.
type call struct {
	Name string
	Args []string
}

// shellBuiltins are the commands sh runs itself (bash, and dash on Debian):
// no program is needed for them.
var shellBuiltins = map[string]bool{
	":": true, ".": true, "[": true, "cd": true, "echo": true, "eval": true, "exec": true, "exit": true,
	"export": true, "false": true, "local": true, "printf": true, "read": true, "return": true,
	"set": true, "shift": true, "test": true, "trap": true, "true": true, "unset": true, "wait": true,
}

// programsOf lists the programs a script runs: what its simple commands
// name, less builtins and the functions it defines, plus what those
// programs run themselves (timeout's command, tar's gzip).
func programsOf(script string) ([]string, error) {
	calls, funcs, err := parseShell(script)
	if err != nil {
		return nil, err
	}
	out := []string{}
	add := func(p string) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, c := range calls {
		if shellBuiltins[c.Name] || funcs[c.Name] {
			continue
		}
		add(c.Name)
		// GNU tar compresses through the gzip program
		if c.Name == "tar" && len(c.Args) > 0 && tarGzipRE.MatchString(c.Args[0]) {
			add("gzip")
		}
		if c.Name == "tar" && slices.ContainsFunc(c.Args, func(a string) bool { return a == "-z" || a == "--gzip" }) {
			add("gzip")
		}
	}
	return out, nil
}

var tarGzipRE = regexp.MustCompile(`^-?[A-Za-y]*z[A-Za-z]*$`)

// parseShell reads the subset of POSIX sh the walkthrough's commands and
// our images' scripts are written in: simple commands, pipelines, lists,
// groups, subshells, if, for and while, function definitions, quoting,
// redirections and $(...). What it does not know (case, backquotes, a
// command named by a variable) is an error, so no program is missed.
func parseShell(script string) (calls []call, funcs map[string]bool, err error) {
	toks, err := lexShell(script)
	if err != nil {
		return nil, nil, err
	}
	funcs = map[string]bool{}
	if err := parseTokens(toks, &calls, funcs); err != nil {
		return nil, nil, err
	}
	return calls, funcs, nil
}

type tokKind int

const (
	tokWord tokKind = iota
	tokOp
	tokRedirect
)

type shellTok struct {
	kind tokKind
	text string // a word without its quotes; an operator
	// subs are the scripts of the word's $(...)
	subs []string
	// dynamic words name something only known when the script runs
	dynamic bool
}

var assignmentRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

func parseTokens(toks []shellTok, calls *[]call, funcs map[string]bool) error {
	const (
		expectCommand = iota
		inCommand
		skipToSeparator // for NAME in WORDS
		afterGroupEnd
		caseSubject // case WORD in
		caseIn
		casePattern // PATTERN | PATTERN )
	)
	state := expectCommand
	cases := 0 // open case statements
	var cur *call
	end := func() {
		if cur != nil {
			*calls = append(*calls, *cur)
			cur = nil
		}
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		for _, s := range tk.subs {
			if err := parseSub(s, calls, funcs); err != nil {
				return err
			}
		}
		if state == casePattern {
			switch {
			case tk.kind == tokOp && tk.text == ")":
				state = expectCommand
			case tk.kind == tokWord && tk.text == "esac":
				cases--
				state = afterGroupEnd
			}
			continue
		}
		switch tk.kind {
		case tokRedirect:
			// the target is a word of its own, whose $(...) still runs
			if i+1 < len(toks) && toks[i+1].kind == tokWord {
				i++
				for _, s := range toks[i].subs {
					if err := parseSub(s, calls, funcs); err != nil {
						return err
					}
				}
			}
			continue
		case tokOp:
			end()
			switch {
			case tk.text == ";" && i > 0 && toks[i-1].kind == tokOp && toks[i-1].text == ";" && cases > 0:
				state = casePattern
			case tk.text == ")" || tk.text == "}":
				state = afterGroupEnd
			default:
				state = expectCommand
			}
			continue
		}
		switch state {
		case skipToSeparator:
			continue
		case caseSubject:
			state = caseIn
			continue
		case caseIn:
			if tk.text != "in" {
				return fmt.Errorf("case without in")
			}
			cases++
			state = casePattern
			continue
		case inCommand:
			if !runsNext(*cur, tk.text) {
				cur.Args = append(cur.Args, tk.text)
				continue
			}
			// exec COMMAND, timeout DURATION COMMAND: the command is a
			// program too
			end()
		case afterGroupEnd:
			if tk.text == "fi" || tk.text == "done" || (tk.text == "esac" && cases > 0) {
				if tk.text == "esac" {
					cases--
				}
				continue
			}
			return fmt.Errorf("unexpected %q after a group", tk.text)
		}
		// a word where a command starts
		switch {
		case tk.text == "until" || tk.text == "select":
			return fmt.Errorf("%q is not understood by this reader", tk.text)
		case tk.text == "case":
			state = caseSubject
			continue
		case tk.text == "esac" && cases > 0:
			cases--
			state = afterGroupEnd
			continue
		case slices.Contains([]string{"if", "then", "else", "elif", "do", "while", "!", "{"}, tk.text):
			continue
		case tk.text == "fi" || tk.text == "done":
			state = afterGroupEnd
			continue
		case tk.text == "for":
			state = skipToSeparator
			continue
		case assignmentRE.MatchString(tk.text):
			// an array: NAME=(WORDS)
			if strings.HasSuffix(tk.text, "=") && i+1 < len(toks) && toks[i+1].kind == tokOp && toks[i+1].text == "(" {
				for i++; i < len(toks) && !(toks[i].kind == tokOp && toks[i].text == ")"); i++ {
				}
			}
			continue
		case i+2 < len(toks) && toks[i+1].kind == tokOp && toks[i+1].text == "(" && toks[i+2].kind == tokOp && toks[i+2].text == ")":
			funcs[tk.text] = true
			i += 2
			state = expectCommand
			continue
		case tk.dynamic:
			return fmt.Errorf("a command named by a variable (%q)", tk.text)
		}
		cur = &call{Name: tk.text}
		state = inCommand
	}
	end()
	if cases != 0 {
		return fmt.Errorf("case without esac")
	}
	return nil
}

// runsNext tells whether word is the command that c runs in turn.
func runsNext(c call, word string) bool {
	if strings.HasPrefix(word, "-") {
		return false
	}
	operands := 0
	for _, a := range c.Args {
		if !strings.HasPrefix(a, "-") {
			operands++
		}
	}
	switch c.Name {
	case "exec":
		return true
	case "timeout":
		return operands == 1
	}
	return false
}

func parseSub(s string, calls *[]call, funcs map[string]bool) error {
	toks, err := lexShell(s)
	if err != nil {
		return err
	}
	return parseTokens(toks, calls, funcs)
}

// lexShell splits a script into words, operators and redirections.
func lexShell(s string) ([]shellTok, error) {
	var toks []shellTok
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			i += 2
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '\n' || c == ';' || c == '(' || c == ')':
			toks = append(toks, shellTok{kind: tokOp, text: string(c)})
			i++
		case c == '&' || c == '|':
			if i+1 < len(s) && s[i+1] == c {
				toks = append(toks, shellTok{kind: tokOp, text: s[i : i+2]})
				i += 2
			} else if c == '&' && i+1 < len(s) && s[i+1] == '>' {
				toks = append(toks, shellTok{kind: tokRedirect, text: "&>"})
				i += 2
			} else {
				toks = append(toks, shellTok{kind: tokOp, text: string(c)})
				i++
			}
		case c == '<' || c == '>':
			j := i + 1
			for j < len(s) && (s[j] == '>' || s[j] == '&' || s[j] == '<') {
				j++
			}
			if strings.HasPrefix(s[i:], "<<") {
				return nil, fmt.Errorf("here-documents are not understood by this reader")
			}
			toks = append(toks, shellTok{kind: tokRedirect, text: s[i:j]})
			i = j
		default:
			tk, n, err := lexWord(s[i:])
			if err != nil {
				return nil, err
			}
			i += n
			// an fd number before a redirection (2>&1) is part of it
			if i < len(s) && (s[i] == '>' || s[i] == '<') && regexp.MustCompile(`^[0-9]+$`).MatchString(tk.text) {
				continue
			}
			if tk.text == "{" || tk.text == "}" {
				tk.kind = tokOp
			}
			toks = append(toks, tk)
		}
	}
	return toks, nil
}

// lexWord reads one word: its text without quotes and its $(...).
func lexWord(s string) (shellTok, int, error) {
	var tk shellTok
	var b strings.Builder
	i := 0
	dollar := func() error {
		switch {
		case strings.HasPrefix(s[i:], "$(("):
			n, err := balanced(s[i+1:])
			if err != nil {
				return err
			}
			b.WriteString("0")
			i += 1 + n
		case strings.HasPrefix(s[i:], "$("):
			n, err := balanced(s[i+1:])
			if err != nil {
				return err
			}
			tk.subs = append(tk.subs, s[i+2:i+n])
			tk.dynamic = true
			b.WriteString("$()")
			i += 1 + n
		case strings.HasPrefix(s[i:], "${"):
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return fmt.Errorf("unterminated ${ in %q", s)
			}
			tk.dynamic = true
			b.WriteString(s[i : i+j+1])
			i += j + 1
		default:
			tk.dynamic = tk.dynamic || (i+1 < len(s) && regexp.MustCompile(`^[A-Za-z_0-9?@*#$!-]`).MatchString(s[i+1:]))
			b.WriteByte('$')
			i++
		}
		return nil
	}
	for i < len(s) {
		c := s[i]
		switch {
		case strings.IndexByte(" \t\n;&|()<>", c) >= 0:
			tk.text = b.String()
			return tk, i, nil
		case c == '`':
			return tk, 0, fmt.Errorf("backquotes are not understood by this reader")
		case c == '\\' && i+1 < len(s):
			b.WriteByte(s[i+1])
			i += 2
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return tk, 0, fmt.Errorf("unterminated ' in %q", s)
			}
			b.WriteString(s[i+1 : i+1+j])
			i += j + 2
		case c == '"':
			i++
			for {
				if i >= len(s) {
					return tk, 0, fmt.Errorf("unterminated \" in %q", s)
				}
				if s[i] == '"' {
					i++
					break
				}
				switch {
				case s[i] == '`':
					return tk, 0, fmt.Errorf("backquotes are not understood by this reader")
				case s[i] == '\\' && i+1 < len(s):
					b.WriteByte(s[i+1])
					i += 2
				case s[i] == '$':
					if err := dollar(); err != nil {
						return tk, 0, err
					}
				default:
					b.WriteByte(s[i])
					i++
				}
			}
		case c == '$':
			if err := dollar(); err != nil {
				return tk, 0, err
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	tk.text = b.String()
	return tk, i, nil
}

// balanced returns the length of s up to and including the parenthesis
// that closes its first one, quotes respected.
func balanced(s string) (int, error) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return 0, fmt.Errorf("unterminated ' in %q", s)
			}
			i += j + 1
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
				if strings.HasPrefix(s[i:], "$(") {
					n, err := balanced(s[i+1:])
					if err != nil {
						return 0, err
					}
					i += n
				}
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("unbalanced parentheses in %q", s)
}

func TestProgramsOf(t *testing.T) {
	for _, c := range []struct {
		script string
		want   []string
	}{
		{"choria ping", []string{"choria"}},
		{"set -e; cd ~; rm -rf a b; cp -R plugins/x .; sha256sum * > ../S; tar -cvzf htdocs/x.tar.gz x", []string{"rm", "cp", "sha256sum", "tar", "gzip"}},
		{"tar -C requests -cf - . | base64 -w0", []string{"tar", "base64"}},
		{"run() { timeout 5 choria broker server $2 > /tmp/x 2>&1; echo \"exit $?\" >> /tmp/x; }; run a b & wait; for f in a b; do echo \"$f: $(grep -c 'V' /tmp/wt-$f), $(tail -1 /tmp/x)\"; done",
			[]string{"timeout", "choria", "grep", "tail"}},
		{"for s in a b; do m=$(nats stream get -S \"x.$s\" R 2>&1); if echo \"$m\" | grep -qF '{\"p\"'; then echo \"$(echo \"$m\" | sed -n 's/^ *X: //p')\"; else echo \"$(echo \"$m\" | head -c 200)\"; fi; done",
			[]string{"nats", "grep", "sed", "head"}},
		{"out=$(x 2>&1) || { echo \"$out\"; exit 1; }; set -- $hdr; r=$(date -u -d \"$recv\" +%s%3N); echo $((r - $5))", []string{"x", "date"}},
		{"if test -e ~/a; then echo y; else echo n; fi", nil},
		{"choria req x --json 2>/dev/null | grep -o 'a' | awk -v t=1 '$2 >= t { n++ } END { print n + 0 }'", []string{"choria", "grep", "awk"}},
		{"exec /bin/choria server run", []string{"/bin/choria"}},
		{"(cd /x && find . -type f) | while IFS= read -r f; do cp a \"$f\"; done", []string{"find", "cp"}},
		{"case \"${1:-x}\" in\n  a) s=(--x y) ;;\n  b | c)\n    case \"$2\" in\n      d) exec cat \"$f\" ;;\n      *) echo u >&2; exit 2 ;;\n    esac\n    ;;\n  *) ls ;;\nesac\nmv a b", []string{"cat", "ls", "mv"}},
	} {
		got, err := programsOf(c.script)
		require.NoError(t, err, c.script)
		assert.ElementsMatch(t, c.want, got, c.script)
	}
	for _, bad := range []string{"case x in a) ls;;", "`ls`", "$cmd arg", "cat <<EOF\nx\nEOF", "echo 'open"} {
		_, err := programsOf(bad)
		assert.Error(t, err, bad)
	}
}
