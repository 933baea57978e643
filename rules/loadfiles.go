package rules

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// MaxFiles bounds the rule files LoadFiles takes.
const MaxFiles = 100

// LoadFiles compiles rule files given by name and content, as Load does a
// directory holding them: the rule files among them (*.yaml and *.yml other
// than *_test.yaml, *_test.yml and hidden files) are read in name order,
// the others ignored. Each file holds at most 1 MiB. Its version is the
// content hash Load gives the same files (without a git commit). Names are
// base names; errors name the files by them.
func LoadFiles(files map[string][]byte) (*Set, error) {
	if len(files) > MaxFiles {
		return nil, fmt.Errorf("%d rule files, at most %d", len(files), MaxFiles)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		if name == "" || name != path.Base(name) || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
			return nil, fmt.Errorf("rule file name %q: want a base name such as 20-policy.yaml", name)
		}
		if strings.HasPrefix(name, ".") || !isRuleFile(name) {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	var rfs []ruleFile
	for _, name := range names {
		data := files[name]
		if len(data) > maxFileSize {
			return nil, fmt.Errorf("read %s: %d bytes is over the limit of %d", name, len(data), maxFileSize)
		}
		rfs = append(rfs, ruleFile{name: name, path: name, data: data})
	}
	if len(rfs) == 0 {
		return nil, fmt.Errorf("load rules: %w (*.yaml or *.yml other than *_test.yaml and *_test.yml)", ErrNoRuleFiles)
	}
	s, err := build(rfs)
	if err != nil {
		return nil, err
	}
	s.version = contentHash(rfs)
	return s, nil
}
