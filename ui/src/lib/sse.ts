// Server-Sent Events framing, fed chunk by chunk as they arrive: a frame may be split
// anywhere, even between the CR and LF of a line ending.

export interface Frame {
  event: string;
  data: string;
}

export class SseReader {
  private pending = '';
  /** A CR ending the last chunk, which may be the first half of a CRLF. */
  private carry = '';

  /** The frames `chunk` completes, in order. */
  push(chunk: string): Frame[] {
    let text = this.carry + chunk;
    this.carry = '';
    if (text.endsWith('\r')) {
      this.carry = '\r';
      text = text.slice(0, -1);
    }
    this.pending += text.replace(/\r\n?/g, '\n');
    const frames: Frame[] = [];
    let end: number;
    while ((end = this.pending.indexOf('\n\n')) >= 0) {
      const frame = parse(this.pending.slice(0, end));
      this.pending = this.pending.slice(end + 2);
      if (frame) frames.push(frame);
    }
    return frames;
  }
}

function parse(block: string): Frame | null {
  let event = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    // Comments (the server's keep-alives) carry nothing.
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return data.length ? { event, data: data.join('\n') } : null;
}
