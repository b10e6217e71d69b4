import { describe, expect, it } from 'vitest';
import { type Frame, SseReader } from '../src/lib/sse';

const STREAM =
  'event: event\ndata: {"id":"a","message":"x: y"}\n\n' +
  ': keep-alive\n\n' +
  'event: missed\ndata: {"missed":12}\n\n' +
  'data: first line\ndata: second line\n\n' +
  'event: event\r\ndata:no space\r\n\r\n' +
  'event: ignored-without-data\n\n';

const WHOLE: Frame[] = [
  { event: 'event', data: '{"id":"a","message":"x: y"}' },
  { event: 'missed', data: '{"missed":12}' },
  { event: 'message', data: 'first line\nsecond line' },
  { event: 'event', data: 'no space' },
];

/** A small seeded generator, so a failure names the split that caused it. */
function random(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

describe('SSE framing', () => {
  it('reads the frames the tail sends', () => {
    expect(new SseReader().push(STREAM)).toEqual(WHOLE);
  });

  it('gives the same frames however the stream is cut into chunks', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const next = random(seed);
      const reader = new SseReader();
      const frames: Frame[] = [];
      for (let at = 0; at < STREAM.length; ) {
        const size = 1 + Math.floor(next() * 12);
        frames.push(...reader.push(STREAM.slice(at, at + size)));
        at += size;
      }
      expect(frames, `seed ${seed}`).toEqual(WHOLE);
    }
  });

  it('one character at a time, including between CR and LF', () => {
    const reader = new SseReader();
    const frames = [...STREAM].flatMap((char) => reader.push(char));
    expect(frames).toEqual(WHOLE);
  });

  it('holds an unfinished frame until it ends', () => {
    const reader = new SseReader();
    expect(reader.push('event: event\ndata: {"id"')).toEqual([]);
    expect(reader.push(':"b"}\n')).toEqual([]);
    expect(reader.push('\n')).toEqual([{ event: 'event', data: '{"id":"b"}' }]);
  });
});
