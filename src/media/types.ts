/** One binary WebSocket frame's worth of media: always whole ISO-BMFF boxes (or one whole JPEG). */
export interface MediaChunk {
  kind: 'init' | 'fragment';
  data: Buffer;
  /** On init chunks: the MSE type read from the stream, e.g. `video/mp4; codecs="avc1.42c01f, mp4a.40.2"`. */
  mime?: string;
}
