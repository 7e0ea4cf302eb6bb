/**
 * The one error class of the topology layer. Every parser (built-in topology, ACPI VIOT,
 * flattened device tree) and the resolver throw only {@link TopologyError} for bad input, so
 * callers can catch one type and switch on its {@link TopologyErrorCode}.
 *
 * @module
 */

/** Which part of the topology layer raised an error. */
export type TopologySource = "builtin" | "viot" | "fdt" | "pci" | "resolve";

/**
 * What went wrong:
 * - `truncated`: the input ends before a structure it announces;
 * - `overrun`: a length or offset points outside the table or window;
 * - `overflow`: arithmetic on announced sizes or IDs leaves its range;
 * - `misaligned`: an offset or length is not a multiple of the access width;
 * - `bad-signature`, `bad-magic`, `bad-checksum`, `bad-version`, `bad-length`: a header field
 *   is wrong;
 * - `bad-token`, `bad-string`: malformed device-tree structure or strings block;
 * - `too-deep`: nesting beyond the parser's limit;
 * - `unknown-reference`: an output node or phandle names nothing valid;
 * - `invalid-range`: a range whose start is after its end, or a bad field value;
 * - `loop`: a cycle in a hierarchy that must be a tree;
 * - `duplicate`: two entries claim the same identity;
 * - `not-found`: a device or IOMMU the caller named does not exist;
 * - `device`: the device misbehaved during the early probe (reset never completed, …).
 */
export type TopologyErrorCode =
  | "truncated"
  | "overrun"
  | "overflow"
  | "misaligned"
  | "bad-signature"
  | "bad-magic"
  | "bad-checksum"
  | "bad-version"
  | "bad-length"
  | "bad-token"
  | "bad-string"
  | "too-deep"
  | "unknown-reference"
  | "invalid-range"
  | "loop"
  | "duplicate"
  | "not-found"
  | "device";

/** Thrown for malformed topology input; `code` says what kind, `source` which parser. */
export class TopologyError extends Error {
  /** The kind of failure. */
  readonly code: TopologyErrorCode;
  /** The parser or stage that failed. */
  readonly source: TopologySource;

  /** Creates the error; the message is prefixed with the source, e.g. "VIOT: …". */
  constructor(source: TopologySource, code: TopologyErrorCode, message: string) {
    super(`${SOURCE_NAMES[source]}: ${message}`);
    this.name = "TopologyError";
    this.code = code;
    this.source = source;
  }
}

const SOURCE_NAMES: Readonly<Record<TopologySource, string>> = {
  builtin: "Built-in topology",
  viot: "VIOT",
  fdt: "Device tree",
  pci: "PCI hierarchy",
  resolve: "Topology resolution",
};
