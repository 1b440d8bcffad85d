package remote

import "strings"

// numSlots is the number of Redis Cluster hash slots.
const numSlots = 16384

// hashSlot returns the Redis Cluster slot of key: CRC16 (XMODEM) of the hash
// tag if key has one, else of the whole key, modulo 16384. The hash tag is
// the text between the first '{' and the first '}' after it, when that text
// is not empty.
func hashSlot(key string) uint16 {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if n := strings.IndexByte(key[open+1:], '}'); n > 0 {
			key = key[open+1 : open+1+n]
		}
	}
	return crc16(key) % numSlots
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0, no
// reflection), the checksum Redis Cluster uses for slots.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^s[i]]
	}
	return crc
}

// crc16Table holds the CRC of every byte value, so crc16 handles a byte per
// step instead of a bit. It is computed once and never written again.
var crc16Table = func() (t [256]uint16) {
	for b := range t {
		crc := uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[b] = crc
	}
	return t
}()

// groupBySlot returns the indexes of keys grouped by hash slot, groups in
// the order of their first key and indexes ascending within a group.
func groupBySlot(keys []string) [][]int {
	groups := make([][]int, 0, len(keys))
	bySlot := make(map[uint16]int, len(keys)) // slot -> index in groups
	for i, k := range keys {
		slot := hashSlot(k)
		g, ok := bySlot[slot]
		if !ok {
			g = len(groups)
			bySlot[slot] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}
