package credentials

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Key is one AES-256 key with its id. The id travels with every ciphertext so
// keys can be rotated: decrypt with any configured key, encrypt with the first.
type Key struct {
	ID     string
	Secret []byte
}

// ParseKeys parses RAPPORT_ENCRYPTION_KEYS: "kid:base64key[,kid:base64key…]",
// 32-byte keys, ids unique and made of letters, digits, '-', '_' and '.'.
// The first key encrypts.
func ParseKeys(s string) ([]Key, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no keys: want kid:base64key[,kid:base64key…]")
	}
	var keys []Key
	seen := map[string]bool{}
	for i, part := range strings.Split(s, ",") {
		id, enc, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || id == "" || enc == "" {
			return nil, fmt.Errorf("key %d: want kid:base64key", i+1)
		}
		for _, r := range id {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return nil, fmt.Errorf("key %d: id %q may hold only letters, digits, '-', '_' and '.'", i+1, id)
			}
		}
		if seen[id] {
			return nil, fmt.Errorf("key %d: duplicate key id %q", i+1, id)
		}
		seen[id] = true
		secret, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			if secret, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(enc, "=")); err != nil {
				return nil, fmt.Errorf("key %q: not base64", id)
			}
		}
		if len(secret) != 32 {
			return nil, fmt.Errorf("key %q: %d bytes, want 32 (AES-256)", id, len(secret))
		}
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	return keys, nil
}
