package microsoft

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// Exchange's global object id (MS-OXOCAL 2.2.1.27 PidLidGlobalObjectId):
//
//	bytes  0–15  the fixed Byte Array ID below
//	bytes 16–19  year (big-endian), month, day of the instance an exception
//	             replaces; zero for a series or a single event
//	bytes 20–27  creation time (FILETIME)
//	bytes 28–35  reserved
//	bytes 36–39  size of the data that follows (little-endian)
//	bytes 40–    data: for an appointment that came from outside Exchange,
//	             "vCal-Uid", a 4-byte version and the iCalendar UID,
//	             NUL-terminated; else Exchange's own unique bytes.
//
// When Exchange sends an invitation as iCalendar (to Google, say), its UID
// is the original UID for a vCal-Uid id, else the hex of the id with the
// instance date cleared (MS-OXCICAL, UID; MS-ASEMAIL 3.1.4.7 gives both
// conversions with examples). Graph's iCalUId is that hex, per occurrence.
var goidHeader = []byte{0x04, 0x00, 0x00, 0x00, 0x82, 0x00, 0xE0, 0x00, 0x74, 0xC5, 0xB7, 0x10, 0x1A, 0x82, 0xE0, 0x08}

const (
	goidDateAt = 16
	goidSizeAt = 36
	goidDataAt = 40
)

var vCalMarker = []byte("vCal-Uid")

// ICalendarUID returns the iCalendar UID other calendars know an event by,
// from Graph's iCalUId or uid: the UID embedded in a global object id that
// came from outside Exchange, else the hex of the id with the instance date
// cleared (upper case, as Exchange writes it into iCalendar). A value that
// is not a global object id is returned unchanged: it already is a UID.
// Instances of one series thus all give the series' UID.
func ICalendarUID(id string) string {
	id = strings.TrimSpace(id)
	raw, ok := decodeGOID(id)
	if !ok {
		return id
	}
	if uid, ok := embeddedUID(raw); ok {
		return uid
	}
	clear(raw[goidDateAt : goidDateAt+4])
	return strings.ToUpper(hex.EncodeToString(raw))
}

// decodeGOID decodes a hex global object id (MS-OXCICAL's EncodedGlobalId:
// all hex, at least 82 digits, even, starting with the Byte Array ID).
func decodeGOID(id string) ([]byte, bool) {
	if len(id) < 82 || len(id)%2 != 0 {
		return nil, false
	}
	raw, err := hex.DecodeString(id)
	if err != nil || !bytes.Equal(raw[:len(goidHeader)], goidHeader) {
		return nil, false
	}
	return raw, true
}

// embeddedUID returns the UID a vCal-Uid global object id carries.
func embeddedUID(raw []byte) (string, bool) {
	if len(raw) < goidDataAt+len(vCalMarker)+4 {
		return "", false
	}
	size := int(binary.LittleEndian.Uint32(raw[goidSizeAt:goidDataAt]))
	data := raw[goidDataAt:]
	if size < len(vCalMarker)+4 || size > len(data) || !bytes.Equal(data[:len(vCalMarker)], vCalMarker) {
		return "", false
	}
	uid := data[len(vCalMarker)+4 : size]
	if i := bytes.IndexByte(uid, 0); i >= 0 {
		uid = uid[:i]
	}
	if len(uid) == 0 {
		return "", false
	}
	return string(uid), true
}
