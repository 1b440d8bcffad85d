package remote

import (
	"fmt"
	"testing"
)

func TestHashSlot(t *testing.T) {
	// Slots as reported by CLUSTER KEYSLOT on redis-server 7.0.
	tests := []struct {
		give string
		want uint16
	}{
		{"123456789", 12739}, // CRC16/XMODEM("123456789") = 0x31C3
		{"foo", 12182},
		{"bar", 5061},
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"foo{}{bar}", 8363},    // empty tag: the whole key
		{"foo{{bar}}zap", 4015}, // tag "{bar"
		{"foo{bar}{zap}", 5061}, // first tag only: "bar"
		{"{}", 15257},
		{"{", 4092},
		{"ns:a", 11273},
		{"ns:{a}b", 15495},
		{"", 0},
	}
	for _, tt := range tests {
		if got := hashSlot(tt.give); got != tt.want {
			t.Errorf("hashSlot(%q) = %d, want %d", tt.give, got, tt.want)
		}
	}
}

func TestGroupBySlot(t *testing.T) {
	keys := []string{"{a}1", "b", "{a}2", "c", "b"}
	got := fmt.Sprint(groupBySlot(keys))
	if want := "[[0 2] [1 4] [3]]"; got != want {
		t.Errorf("groupBySlot(%q) = %s, want %s", keys, got, want)
	}
}
