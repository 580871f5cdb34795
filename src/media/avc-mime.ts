/**
 * The MSE type string (`video/mp4; codecs="avc1.42c01f, mp4a.40.2"`) read from an init
 * segment. x264 picks profile and level from size, rate and preset, so the string must
 * come from the stream itself: a browser may refuse a SourceBuffer whose declared
 * level is below the stream's.
 */
import { type Box, BoxFormatError, childBoxes, findChild, findChildren, findPath, iterateBoxes, payload, readHandlerType } from './boxes.js';

const hex2 = (value: number): string => value.toString(16).padStart(2, '0');

/** `avc1.PPCCLL` from an `avcC` (AVCDecoderConfigurationRecord). */
export function avcCodecString(entryType: string, avcC: Box): string {
  const body = payload(avcC);
  if (body.length < 4) throw new BoxFormatError(`'avcC' is ${body.length} bytes, too short for profile and level`);
  // configurationVersion, AVCProfileIndication, profile_compatibility, AVCLevelIndication
  return `${entryType}.${hex2(body[1] ?? 0)}${hex2(body[2] ?? 0)}${hex2(body[3] ?? 0)}`;
}

interface Descriptor {
  tag: number;
  body: Buffer;
}

/** MPEG-4 descriptors (ISO 14496-1): tag, then a size in 7-bit groups. */
function* descriptors(buf: Buffer): Generator<Descriptor> {
  let offset = 0;
  while (offset + 2 <= buf.length) {
    const tag = buf[offset++] ?? 0;
    let size = 0;
    for (let i = 0; i < 4; i++) {
      const byte = buf[offset++];
      if (byte === undefined) return;
      size = (size << 7) | (byte & 0x7f);
      if ((byte & 0x80) === 0) break;
    }
    if (offset + size > buf.length) return;
    yield { tag, body: buf.subarray(offset, offset + size) };
    offset += size;
  }
}

const ES_DESCRIPTOR = 0x03;
const DECODER_CONFIG_DESCRIPTOR = 0x04;
const DECODER_SPECIFIC_INFO = 0x05;

/** The body of an ES_Descriptor after its flag-dependent fields. */
function esDescriptorChildren(es: Buffer): Buffer {
  const flags = es[2] ?? 0; // after ES_ID (16 bits)
  let offset = 3;
  if (flags & 0x80) offset += 2; // dependsOn_ES_ID
  if (flags & 0x40) offset += 1 + (es[offset] ?? 0); // URL
  if (flags & 0x20) offset += 2; // OCR_ES_Id
  return es.subarray(offset);
}

/**
 * `mp4a.OO.A` from an `esds`: OO is the objectTypeIndication in hex (0x40 = MPEG-4
 * audio), A the audio object type from the AudioSpecificConfig (2 = AAC-LC).
 */
export function mp4aCodecString(esds: Box): string {
  const body = payload(esds).subarray(4); // version/flags
  for (const es of descriptors(body)) {
    if (es.tag !== ES_DESCRIPTOR) continue;
    for (const config of descriptors(esDescriptorChildren(es.body))) {
      if (config.tag !== DECODER_CONFIG_DESCRIPTOR) continue;
      const objectType = config.body[0];
      if (objectType === undefined) break;
      // objectTypeIndication, streamType/upStream, bufferSizeDB(24), maxBitrate, avgBitrate: 13 bytes
      for (const info of descriptors(config.body.subarray(13))) {
        if (info.tag !== DECODER_SPECIFIC_INFO || info.body.length === 0) continue;
        let audioObjectType = (info.body[0] ?? 0) >> 3;
        if (audioObjectType === 31) {
          // Escape: 6 more bits follow the 5 that said 31.
          audioObjectType = 32 + ((((info.body[0] ?? 0) & 0x07) << 3) | ((info.body[1] ?? 0) >> 5));
        }
        return `mp4a.${hex2(objectType)}.${audioObjectType}`;
      }
      return `mp4a.${hex2(objectType)}`;
    }
  }
  throw new BoxFormatError(`'esds' has no DecoderConfigDescriptor`);
}

/** AAC-LC, what ffmpeg's `aac` encoder makes; used when an `mp4a` entry has no readable `esds`. */
const DEFAULT_MP4A = 'mp4a.40.2';

function sampleEntryCodec(entry: Box): string {
  switch (entry.type) {
    case 'avc1':
    case 'avc3': {
      const avcC = findChild(entry, 'avcC');
      if (!avcC) throw new BoxFormatError(`'${entry.type}' sample entry has no 'avcC'`);
      return avcCodecString(entry.type, avcC);
    }
    case 'mp4a': {
      const esds = findChild(entry, 'esds');
      if (!esds) return DEFAULT_MP4A;
      try {
        return mp4aCodecString(esds);
      } catch {
        return DEFAULT_MP4A;
      }
    }
    default:
      // Other codecs need more than the 4CC in their string; say what we saw rather than guess.
      return entry.type;
  }
}

/** The codec strings of every track in an init segment (`ftyp`+`moov`), in track order. */
export function codecStrings(initSegment: Buffer): { codecs: string[]; hasVideo: boolean } {
  const moov = [...iterateBoxes(initSegment)].find((box) => box.type === 'moov');
  if (!moov) throw new BoxFormatError('init segment has no moov');
  const codecs: string[] = [];
  let hasVideo = false;
  for (const trak of findChildren(moov, 'trak')) {
    const hdlr = findPath(trak, ['mdia', 'hdlr']);
    if (hdlr && readHandlerType(hdlr) === 'vide') hasVideo = true;
    const stsd = findPath(trak, ['mdia', 'minf', 'stbl', 'stsd']);
    if (!stsd) throw new BoxFormatError(`'trak' has no 'stsd'`);
    // One codec per track: further entries (rare) would only repeat it with other parameters.
    const entry = childBoxes(stsd).next();
    if (entry.done) throw new BoxFormatError(`'stsd' has no sample entry`);
    codecs.push(sampleEntryCodec(entry.value));
  }
  return { codecs, hasVideo };
}

/** `video/mp4; codecs="avc1.42c01f, mp4a.40.2"` for an init segment. */
export function mimeFromInitSegment(initSegment: Buffer): string {
  const { codecs, hasVideo } = codecStrings(initSegment);
  return `${hasVideo ? 'video' : 'audio'}/mp4; codecs="${codecs.join(', ')}"`;
}
