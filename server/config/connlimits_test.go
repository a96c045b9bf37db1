package config

import (
	"strings"
	"testing"
)

// TestConnLimitKeys: the [limits] connection keys parse, and bad values
// are refused with the key named.
func TestConnLimitKeys(t *testing.T) {
	doc := "[server]\ndomains = [\"a.example\"]\n[limits]\nmax_unauthenticated = 10\nmax_unauthenticated_per_ip = 2\n" +
		"connection_rate_per_ip = 0.5\nconnection_burst_per_ip = 3\nread_bytes_per_second = 8192\nread_burst_bytes = 16384\n"
	cfg, err := Parse("t.toml", []byte(doc), testRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Limits
	if l.MaxUnauthenticated != 10 || l.MaxUnauthenticatedPerIP != 2 || l.ConnectionRatePerIP != 0.5 ||
		l.ConnectionBurstPerIP != 3 || l.ReadBytesPerSecond != 8192 || l.ReadBurstBytes != 16384 {
		t.Fatalf("limits %+v", l)
	}
	for _, tt := range []struct{ keys, want string }{
		{"max_unauthenticated = -1", "limits.max_unauthenticated: must be 0 (no limit) or more, got -1"},
		{"max_unauthenticated_per_ip = -5", "limits.max_unauthenticated_per_ip: must be 0 (no limit) or more, got -5"},
		{"connection_rate_per_ip = -1.0", "limits.connection_rate_per_ip: must be 0 (no limit) or more, got -1"},
		{"connection_rate_per_ip = 5.0\nconnection_burst_per_ip = 0", "limits.connection_burst_per_ip: must be at least 1, got 0"},
		{"read_bytes_per_second = 100", "limits.read_bytes_per_second: must be 0 (no limit) or at least 1024, got 100"},
		{"read_bytes_per_second = 100000\nread_burst_bytes = 1000", "limits.read_burst_bytes: must be at least 4096 and a tenth of limits.read_bytes_per_second, got 1000"},
	} {
		_, err := Parse("t.toml", []byte("[server]\ndomains = [\"a.example\"]\n[limits]\n"+tt.keys+"\n"), testRegistry())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.keys, err, tt.want)
		}
	}
	// 0 switches each off.
	off := "[server]\ndomains = [\"a.example\"]\n[limits]\nmax_unauthenticated = 0\nmax_unauthenticated_per_ip = 0\nconnection_rate_per_ip = 0.0\nconnection_burst_per_ip = 0\nread_bytes_per_second = 0\nread_burst_bytes = 0\n"
	if _, err := Parse("t.toml", []byte(off), testRegistry()); err != nil {
		t.Fatalf("all off: %v", err)
	}
}
