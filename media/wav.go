package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// WAV files (RIFF/WAVE). The reader accepts what softphone users have lying
// around: 16-bit integer PCM, mono or stereo, any sample rate, in the plain
// (format tag 1) or WAVE_FORMAT_EXTENSIBLE (0xFFFE with the PCM sub-format)
// layout, with any number of extra chunks (LIST, fact, ...) before or after
// the data. It returns 8 kHz mono: stereo is averaged and other rates are
// resampled. Everything else (8-bit, 24-bit, float, compressed) is rejected
// with ErrWAVFormat so the user learns to convert the file rather than hear
// noise. The writer produces 8 kHz mono PCM16, the format our recordings use.

// maxWAVBytes bounds how much sample data ReadWAV accepts (about 10 minutes of
// 48 kHz stereo); a corrupt size field must not make us allocate gigabytes.
const maxWAVBytes = 128 << 20

const (
	wavFormatPCM        = 1
	wavFormatExtensible = 0xFFFE
)

// wavPCMSubformat is the KSDATAFORMAT_SUBTYPE_PCM GUID as stored in the file.
var wavPCMSubformat = []byte{0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71}

// WAVInfo describes the file ReadWAV parsed, before conversion.
type WAVInfo struct {
	SampleRate int // samples per second per channel in the file
	Channels   int // 1 or 2
	Frames     int // samples per channel in the file
}

// ReadWAV parses a WAV stream and returns its audio as 8 kHz mono samples.
func ReadWAV(r io.Reader) ([]int16, WAVInfo, error) {
	var info WAVInfo
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, info, fmt.Errorf("%w: %v", ErrNotWAV, err)
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return nil, info, ErrNotWAV
	}
	var (
		haveFmt bool
		bits    int
		data    []byte
	)
	for data == nil {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			if !haveFmt {
				return nil, info, fmt.Errorf("%w: no fmt chunk", ErrWAVTruncated)
			}
			return nil, info, fmt.Errorf("%w: no data chunk", ErrWAVTruncated)
		}
		id := string(ch[0:4])
		size := int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if size < 16 || size > 1024 {
				return nil, info, fmt.Errorf("%w: fmt chunk of %d bytes", ErrWAVFormat, size)
			}
			b := make([]byte, size+size&1)
			if _, err := io.ReadFull(r, b); err != nil {
				return nil, info, fmt.Errorf("%w: fmt chunk: %v", ErrWAVTruncated, err)
			}
			tag := binary.LittleEndian.Uint16(b[0:2])
			info.Channels = int(binary.LittleEndian.Uint16(b[2:4]))
			info.SampleRate = int(binary.LittleEndian.Uint32(b[4:8]))
			bits = int(binary.LittleEndian.Uint16(b[14:16]))
			if tag == wavFormatExtensible {
				if size < 40 || !bytes.Equal(b[24:40], wavPCMSubformat) {
					return nil, info, fmt.Errorf("%w: extensible format with a non-PCM sub-format", ErrWAVFormat)
				}
				tag = wavFormatPCM
			}
			if tag != wavFormatPCM {
				return nil, info, fmt.Errorf("%w: format tag %#x is not integer PCM", ErrWAVFormat, tag)
			}
			if bits != 16 {
				return nil, info, fmt.Errorf("%w: %d bits per sample", ErrWAVFormat, bits)
			}
			if info.Channels != 1 && info.Channels != 2 {
				return nil, info, fmt.Errorf("%w: %d channels", ErrWAVFormat, info.Channels)
			}
			if info.SampleRate < 1000 || info.SampleRate > 384000 {
				return nil, info, fmt.Errorf("%w: sample rate %d Hz", ErrWAVFormat, info.SampleRate)
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, info, fmt.Errorf("%w: data chunk before fmt chunk", ErrWAVFormat)
			}
			// Streaming writers leave the size as 0 or 0xFFFFFFFF; reading up to
			// the limit and then to EOF handles both and a size that is too big.
			if size == 0 || size > maxWAVBytes {
				size = maxWAVBytes
			}
			var err error
			data, err = io.ReadAll(io.LimitReader(r, size))
			if err != nil {
				return nil, info, fmt.Errorf("%w: data chunk: %v", ErrWAVTruncated, err)
			}
			if data == nil {
				data = []byte{}
			}
		default:
			if _, err := io.CopyN(io.Discard, r, size+size&1); err != nil {
				return nil, info, fmt.Errorf("%w: %q chunk: %v", ErrWAVTruncated, id, err)
			}
		}
	}
	frameBytes := 2 * info.Channels
	info.Frames = len(data) / frameBytes
	mono := make([]int16, info.Frames)
	for i := range mono {
		off := i * frameBytes
		if info.Channels == 1 {
			mono[i] = int16(binary.LittleEndian.Uint16(data[off:]))
		} else {
			l := int32(int16(binary.LittleEndian.Uint16(data[off:])))
			r := int32(int16(binary.LittleEndian.Uint16(data[off+2:])))
			mono[i] = int16((l + r) / 2)
		}
	}
	return Resample(mono, info.SampleRate, SampleRate), info, nil
}

// ReadWAVFile reads a WAV file from disk as 8 kHz mono samples.
func ReadWAVFile(path string) ([]int16, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, _, err := ReadWAV(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return s, nil
}

// wavHeader returns the 44-byte header of an 8 kHz mono PCM16 file holding
// dataBytes of samples.
func wavHeader(dataBytes uint32) []byte {
	h := make([]byte, 44)
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+dataBytes)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], wavFormatPCM)
	binary.LittleEndian.PutUint16(h[22:], 1)
	binary.LittleEndian.PutUint32(h[24:], SampleRate)
	binary.LittleEndian.PutUint32(h[28:], SampleRate*2)
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], dataBytes)
	return h
}

// WriteWAV writes samples as an 8 kHz mono PCM16 WAV file to w.
func WriteWAV(w io.Writer, samples []int16) error {
	if len(samples) > (1<<32-1-36)/2 {
		return errors.New("wav: too many samples for a RIFF file")
	}
	buf := make([]byte, 0, 44+2*len(samples))
	buf = append(buf, wavHeader(uint32(2*len(samples)))...)
	for _, s := range samples {
		buf = binary.LittleEndian.AppendUint16(buf, uint16(s))
	}
	_, err := w.Write(buf)
	return err
}

// WriteWAVFile writes samples to path as an 8 kHz mono PCM16 WAV file.
func WriteWAVFile(path string, samples []int16) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteWAV(f, samples); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
