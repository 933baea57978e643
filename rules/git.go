package rules

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// gitCommit returns the commit checked out in the git work tree holding dir,
// or "" when there is none (no checkout, no commit yet, unreadable). It reads
// .git itself rather than running git, which a container may not have.
func gitCommit(dir string) string {
	d, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		dotGit := filepath.Join(d, ".git")
		if fi, err := os.Stat(dotGit); err == nil {
			if fi.IsDir() {
				return headCommit(dotGit, dotGit)
			}
			return linkedCommit(d, dotGit)
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}

// linkedCommit follows a .git file ("gitdir: …") of a linked worktree or a
// submodule.
func linkedCommit(workTree, dotGit string) string {
	b, err := os.ReadFile(dotGit)
	if err != nil {
		return ""
	}
	gitDir, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir:")
	if !ok {
		return ""
	}
	gitDir = resolve(workTree, strings.TrimSpace(gitDir))
	common := gitDir
	if c, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		common = resolve(gitDir, strings.TrimSpace(string(c)))
	}
	return headCommit(gitDir, common)
}

func resolve(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// headCommit resolves HEAD of gitDir; branch refs live in commonDir (the
// main repository's .git for a linked worktree).
func headCommit(gitDir, commonDir string) string {
	b, err := os.ReadFile(filepath.Join(gitDir, "HEAD"))
	if err != nil {
		return ""
	}
	head := strings.TrimSpace(string(b))
	ref, symbolic := strings.CutPrefix(head, "ref:")
	if !symbolic {
		return hashOrEmpty(head)
	}
	ref = strings.TrimSpace(ref)
	if strings.Contains(ref, "..") {
		return ""
	}
	for _, d := range []string{gitDir, commonDir} {
		if b, err := os.ReadFile(filepath.Join(d, filepath.FromSlash(ref))); err == nil {
			return hashOrEmpty(strings.TrimSpace(string(b)))
		}
	}
	packed, err := os.ReadFile(filepath.Join(commonDir, "packed-refs"))
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(packed))
	for sc.Scan() {
		hash, name, ok := strings.Cut(sc.Text(), " ")
		if ok && name == ref {
			return hashOrEmpty(hash)
		}
	}
	return ""
}

// hashOrEmpty accepts a SHA-1 or SHA-256 object name.
func hashOrEmpty(s string) string {
	if len(s) != 40 && len(s) != 64 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return ""
		}
	}
	return s
}
