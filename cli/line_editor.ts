/**
 * A small line editor for the interactive shell: the terminal in raw mode, printable input,
 * backspace, left/right, home/end, up/down through the history, Ctrl-C to drop the line and
 * Ctrl-D (on an empty line) to leave.
 *
 * @module
 */

/** The terminal the editor drives. */
export interface Terminal {
  /** Reads some bytes; null at end of input. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes text as it is. */
  write(text: string): void;
  /** Turns raw mode on or off. */
  setRaw(raw: boolean): void;
}

/** The standard input/output terminal of this process. */
export function denoTerminal(): Terminal {
  const encoder = new TextEncoder();
  return {
    read: (buffer: Uint8Array): Promise<number | null> => Deno.stdin.read(buffer),
    write: (text: string): void => {
      const bytes = encoder.encode(text);
      let done = 0;
      while (done < bytes.length) done += Deno.stdout.writeSync(bytes.subarray(done));
    },
    setRaw: (raw: boolean): void => Deno.stdin.setRaw(raw),
  };
}

const CTRL_A = 0x01;
const CTRL_C = 0x03;
const CTRL_D = 0x04;
const CTRL_E = 0x05;
const CTRL_U = 0x15;
const BACKSPACE = 0x7f;
const CTRL_H = 0x08;
const ESC = 0x1b;

/** Reads lines with editing and history. */
export class LineEditor {
  #terminal: Terminal;
  #history: string[] = [];
  #pending: number[] = [];
  #decoder = new TextDecoder();

  /** Creates an editor over `terminal`. */
  constructor(terminal: Terminal) {
    this.#terminal = terminal;
  }

  /** Lines entered so far, oldest first. */
  get history(): readonly string[] {
    return this.#history;
  }

  async #byte(): Promise<number | null> {
    if (this.#pending.length === 0) {
      const buffer = new Uint8Array(256);
      const n = await this.#terminal.read(buffer);
      if (n === null || n === 0) return null;
      this.#pending.push(...buffer.subarray(0, n));
    }
    return this.#pending.shift()!;
  }

  /** Reads one line after showing `prompt`; null at end of input (Ctrl-D on an empty line). */
  async readLine(prompt: string): Promise<string | null> {
    const t = this.#terminal;
    let chars: string[] = [];
    let cursor = 0;
    let index = this.#history.length; // position in history; length = the line being edited
    let draft: string[] = [];
    const redraw = (): void => {
      const back = chars.length - cursor;
      t.write(`\r\x1b[K${prompt}${chars.join("")}${back > 0 ? `\x1b[${back}D` : ""}`);
    };
    t.setRaw(true);
    try {
      redraw();
      for (;;) {
        const b = await this.#byte();
        if (b === null) {
          t.write("\r\n");
          return chars.length > 0 ? chars.join("") : null;
        }
        if (b === 0x0d || b === 0x0a) {
          t.write("\r\n");
          const line = chars.join("");
          if (line.trim() !== "" && this.#history.at(-1) !== line) this.#history.push(line);
          return line;
        }
        if (b === CTRL_D) {
          if (chars.length === 0) {
            t.write("\r\n");
            return null;
          }
          continue;
        }
        if (b === CTRL_C) {
          t.write("^C\r\n");
          chars = [];
          cursor = 0;
          index = this.#history.length;
        } else if (b === BACKSPACE || b === CTRL_H) {
          if (cursor > 0) {
            chars.splice(cursor - 1, 1);
            cursor--;
          }
        } else if (b === CTRL_A) {
          cursor = 0;
        } else if (b === CTRL_E) {
          cursor = chars.length;
        } else if (b === CTRL_U) {
          chars.splice(0, cursor);
          cursor = 0;
        } else if (b === ESC) {
          const key = await this.#escape();
          if (key === "up" && index > 0) {
            if (index === this.#history.length) draft = chars;
            index--;
            chars = [...this.#history[index]];
            cursor = chars.length;
          } else if (key === "down" && index < this.#history.length) {
            index++;
            chars = index === this.#history.length ? draft : [...this.#history[index]];
            cursor = chars.length;
          } else if (key === "left" && cursor > 0) {
            cursor--;
          } else if (key === "right" && cursor < chars.length) {
            cursor++;
          } else if (key === "home") {
            cursor = 0;
          } else if (key === "end") {
            cursor = chars.length;
          }
        } else if (b >= 0x20) {
          // Printable (UTF-8 sequences are collected whole).
          const bytes = [b];
          const extra = b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : b >= 0xc0 ? 1 : 0;
          for (let i = 0; i < extra; i++) {
            const next = await this.#byte();
            if (next === null) break;
            bytes.push(next);
          }
          chars.splice(cursor, 0, this.#decoder.decode(new Uint8Array(bytes)));
          cursor++;
        }
        redraw();
      }
    } finally {
      t.setRaw(false);
    }
  }

  /** Reads the rest of an escape sequence (CSI or SS3) and names the key. */
  async #escape(): Promise<string> {
    const intro = await this.#byte();
    if (intro !== 0x5b && intro !== 0x4f) return "";
    let final = await this.#byte();
    let param = "";
    while (final !== null && final >= 0x30 && final <= 0x3f) {
      param += String.fromCharCode(final);
      final = await this.#byte();
    }
    switch (final) {
      case 0x41:
        return "up";
      case 0x42:
        return "down";
      case 0x43:
        return "right";
      case 0x44:
        return "left";
      case 0x48:
        return "home";
      case 0x46:
        return "end";
      case 0x7e:
        return param === "1" || param === "7"
          ? "home"
          : param === "4" || param === "8"
          ? "end"
          : "";
      default:
        return "";
    }
  }

  /** Yields lines until end of input. */
  async *lines(prompt: string): AsyncGenerator<string> {
    for (;;) {
      const line = await this.readLine(prompt);
      if (line === null) return;
      yield line;
    }
  }
}
