package credentials

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// nonceSize is the AES-GCM standard nonce; ciphertexts are nonce || sealed.
const nonceSize = 12

// sealedToken is the plaintext of a ciphertext: only what a refresh needs.
type sealedToken struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	TokenType    string    `json:"token_type,omitempty"`
}

// keyring holds the AEADs of the configured keys by id; first encrypts.
type keyring struct {
	first string
	aeads map[string]cipher.AEAD
}

func newKeyring(keys []Key) (*keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no encryption keys: set RAPPORT_ENCRYPTION_KEYS")
	}
	kr := &keyring{first: keys[0].ID, aeads: make(map[string]cipher.AEAD, len(keys))}
	for i, k := range keys {
		if k.ID == "" {
			return nil, fmt.Errorf("encryption key %d has no id", i+1)
		}
		if _, dup := kr.aeads[k.ID]; dup {
			return nil, fmt.Errorf("duplicate encryption key id %q", k.ID)
		}
		if len(k.Secret) != 32 {
			return nil, fmt.Errorf("encryption key %q: %d bytes, want 32 (AES-256)", k.ID, len(k.Secret))
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("encryption key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("encryption key %q: %w", k.ID, err)
		}
		kr.aeads[k.ID] = aead
	}
	return kr, nil
}

// seal encrypts tok under the first key. The connection id is the additional
// data, so a ciphertext copied into another row does not open there.
func (kr *keyring) seal(connID string, tok *oauth2.Token) (keyID string, ciphertext []byte, err error) {
	plain, err := json.Marshal(sealedToken{
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		Expiry:       tok.Expiry.UTC(),
		TokenType:    tok.TokenType,
	})
	if err != nil {
		return "", nil, fmt.Errorf("encode token: %w", err)
	}
	nonce := make([]byte, nonceSize, nonceSize+len(plain)+16)
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, fmt.Errorf("nonce: %w", err)
	}
	return kr.first, kr.aeads[kr.first].Seal(nonce, nonce, plain, []byte(connID)), nil
}

// open decrypts the ciphertext of connection connID sealed under keyID.
func (kr *keyring) open(connID, keyID string, ciphertext []byte) (*oauth2.Token, error) {
	aead, ok := kr.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("connection %s: its token is sealed with key %q, which RAPPORT_ENCRYPTION_KEYS does not hold; add that key back", connID, keyID)
	}
	if len(ciphertext) < nonceSize+aead.Overhead() {
		return nil, fmt.Errorf("connection %s: token ciphertext is truncated", connID)
	}
	plain, err := aead.Open(nil, ciphertext[:nonceSize], ciphertext[nonceSize:], []byte(connID))
	if err != nil {
		return nil, fmt.Errorf("connection %s: token ciphertext does not authenticate under key %q (corrupt or moved from another row)", connID, keyID)
	}
	var st sealedToken
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, fmt.Errorf("connection %s: decode token: %w", connID, err)
	}
	return &oauth2.Token{
		AccessToken:  st.AccessToken,
		RefreshToken: st.RefreshToken,
		Expiry:       st.Expiry,
		TokenType:    st.TokenType,
	}, nil
}

// sealBytes encrypts plain under the first key, bound to ad: the key id
// (length-prefixed), then nonce || sealed.
func (kr *keyring) sealBytes(ad string, plain []byte) ([]byte, error) {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	out := make([]byte, 0, 1+len(kr.first)+nonceSize+len(plain)+16)
	out = append(out, byte(len(kr.first)))
	out = append(out, kr.first...)
	out = append(out, nonce...)
	return kr.aeads[kr.first].Seal(out, nonce, plain, []byte(ad)), nil
}

// openBytes decrypts what sealBytes sealed under ad, with whichever
// configured key sealed it.
func (kr *keyring) openBytes(ad string, sealed []byte) ([]byte, error) {
	if len(sealed) < 1 || len(sealed) < 1+int(sealed[0])+nonceSize {
		return nil, errors.New("sealed value is truncated")
	}
	keyID := string(sealed[1 : 1+int(sealed[0])])
	aead, ok := kr.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("sealed with key %q, which RAPPORT_ENCRYPTION_KEYS does not hold", keyID)
	}
	rest := sealed[1+int(sealed[0]):]
	plain, err := aead.Open(nil, rest[:nonceSize], rest[nonceSize:], []byte(ad))
	if err != nil {
		return nil, fmt.Errorf("sealed value does not authenticate under key %q", keyID)
	}
	return plain, nil
}
