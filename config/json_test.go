package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// jsonConfig decodes data as Parse did before decodeConfigFast.
func jsonConfig(data []byte) (Config, error) {
	var c Config
	err := json.NewDecoder(bytes.NewReader(data)).Decode(&c)
	return c, err
}

// TestDecodeConfigFastTakesWrittenConfigs: what WriteFile (and so
// `sq tenants gen/add/disable`) writes, every field used, takes the fast
// path and decodes to what encoding/json gives.
func TestDecodeConfigFastTakesWrittenConfigs(t *testing.T) {
	off, on := false, true
	cfg := &Config{AdminToken: "adm-1", MetricsToken: "met-1", Tenants: map[string]TenantEntry{
		"pmb-v1-001-aaaa": {Name: "a", DataDir: "/var/lib/sq/a"},
		"pmb-v1-002-bbbb": {Name: "b", DataDir: "rel/b", QuotaMB: 1.5, Enabled: &off, Durability: "always"},
		"pmb-v1-003-cccc": {Name: "café ü", DataDir: "/data/é", QuotaMB: 1e3, Enabled: &on, Durability: "no"},
		"pmb-v1-004-dddd": {Name: "d", DataDir: "/d", QuotaMB: 0.000001},
	}}
	path := filepath.Join(t.TempDir(), "tenants.json")
	if err := WriteFile(path, cfg); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{
		"indented": data,
		"compact":  compactJSON(t, data),
		"empty":    []byte(`{"tenants":{}}`),
		"trailing": append(compactJSON(t, data), []byte("\n{not json")...),
		"10k tenants": func() []byte {
			b, err := manyTenants(10000).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := decodeConfigFast(in)
			if !ok {
				t.Fatal("the fast decoder declined a config in the written shape")
			}
			want, err := jsonConfig(in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("fast decoder: %+v\nencoding/json: %+v", got, want)
			}
		})
	}
}

func compactJSON(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// declinedConfigs are inputs outside the fast decoder's shape: each must go
// to encoding/json, whose result (or error message) Parse returns.
var declinedConfigs = []string{
	``,
	`   `,
	`null`,
	`[]`,
	`{"tenants": null}`,
	`{"tenants": {"t": null}}`,
	`{"tenants": {"t": {"name": null, "data_dir": "/x"}}}`,
	`{"Tenants": {"t": {"name": "a", "data_dir": "/x"}}}`,
	`{"tenants": {"t": {"NAME": "a", "data_dir": "/x"}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "extra": [1, {"y": 2}]}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x"}}, "comment": "x"}`,
	`{"tenants": {"t": {"name": "a", "name": "b", "data_dir": "/x"}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x"}, "t": {"name": "b", "data_dir": "/y"}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x"}}, "tenants": {"u": {"name": "b", "data_dir": "/y"}}}`,
	`{"tenants": {"t\u0041": {"name": "a\n", "data_dir": "/x"}}}`,
	`{"tenants": {"t": {"name": "a\"b", "data_dir": "/x"}}}`,
	"{\"tenants\": {\"t\": {\"name\": \"a\xff\", \"data_dir\": \"/x\"}}}",
	"{\"tenants\": {\"t\": {\"name\": \"a\tb\", \"data_dir\": \"/x\"}}}",
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "quota_mb": 01}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "quota_mb": "5"}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "quota_mb": 1e999}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "quota_mb": -}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "quota_mb": 1.}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "quota_mb": .5}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "quota_mb": 0x10}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "enabled": 1}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "enabled": truex}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x", "enabled": null}}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x"},}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x"}}`,
	`{"tenants": {"t": {"name": "a", "data_dir": "/x"}} x`,
	`{"admin_token": 5, "tenants": {}}`,
	"\ufeff{\"tenants\": {}}",
}

// TestDecodeConfigFastDeclines: outside its shape the fast decoder answers
// nothing, and Parse's result, error message included, is
// encoding/json's.
func TestDecodeConfigFastDeclines(t *testing.T) {
	for i, in := range declinedConfigs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if c, ok := decodeConfigFast([]byte(in)); ok {
				t.Fatalf("%q: fast decoder answered %+v", in, c)
			}
			got, err := Parse([]byte(in))
			want, jerr := jsonConfig([]byte(in))
			switch {
			case jerr != nil:
				if err == nil || !strings.Contains(err.Error(), jerr.Error()) {
					t.Fatalf("%q: Parse error %v, want encoding/json's %v", in, err, jerr)
				}
			case err == nil && !reflect.DeepEqual(*got, want):
				t.Fatalf("%q: Parse %+v, encoding/json %+v", in, *got, want)
			}
		})
	}
}

// FuzzDecodeConfigFast: whenever the fast decoder answers, encoding/json
// accepts the input and decodes the same Config.
func FuzzDecodeConfigFast(f *testing.F) {
	for _, s := range declinedConfigs {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"tenants": {"pmb-v1-001-a": {"name": "a", "data_dir": "/x", "quota_mb": -0.5e-3, "enabled": false, "durability": "always"}}, "admin_token": "z", "metrics_token": ""}`))
	f.Add([]byte("{\"tenants\":{\"\":{}}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := decodeConfigFast(data)
		if !ok {
			return
		}
		want, err := jsonConfig(data)
		if err != nil {
			t.Fatalf("%q: fast decoder answered, encoding/json refused: %v", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: fast decoder %+v, encoding/json %+v", data, got, want)
		}
	})
}

// manyTenants is a config of n tenants in the shape `sq tenants gen`
// writes (the server's density tests start such a config).
func manyTenants(n int) *Config {
	c := &Config{Tenants: make(map[string]TenantEntry, n)}
	for i := range n {
		tok, name := fmt.Sprintf("pmb-v1-%05d-json-test-token", i), fmt.Sprintf("tenant-%05d", i)
		c.Tenants[tok] = TenantEntry{Name: name, DataDir: "/srv/sq/" + name}
	}
	return c
}
