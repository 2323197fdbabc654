package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// GenerateKey makes a new ECDSA P-256 private key, the only key type the
// mesh uses.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating P-256 key: %w", err)
	}
	return key, nil
}

// IsP256 reports whether pub is an ECDSA P-256 public key.
func IsP256(pub crypto.PublicKey) bool {
	key, ok := pub.(*ecdsa.PublicKey)
	return ok && key.Curve == elliptic.P256()
}

// EncodePrivateKey returns key as a PKCS#8 "PRIVATE KEY" PEM block.
func EncodePrivateKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey reads the first private key PEM block in data: PKCS#8
// ("PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"). Only ECDSA P-256 keys are
// accepted.
func ParsePrivateKey(data []byte) (*ecdsa.PrivateKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PRIVATE KEY or EC PRIVATE KEY PEM block found")
		}
		var parsed any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			parsed, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
		}
		key, ok := parsed.(*ecdsa.PrivateKey)
		if !ok || !IsP256(key.Public()) {
			return nil, fmt.Errorf("private key is %T, want ECDSA P-256", parsed)
		}
		return key, nil
	}
}

// EncodePublicKey returns key as a PKIX "PUBLIC KEY" PEM block.
func EncodePublicKey(key *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads the first "PUBLIC KEY" PEM block in data, which
// must hold an ECDSA P-256 key.
func ParsePublicKey(data []byte) (*ecdsa.PublicKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PUBLIC KEY PEM block found")
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing PUBLIC KEY: %w", err)
		}
		if !IsP256(parsed) {
			return nil, fmt.Errorf("public key is %T, want ECDSA P-256", parsed)
		}
		return parsed.(*ecdsa.PublicKey), nil
	}
}
