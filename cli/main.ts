/**
 * The `viommu` command line: parses the arguments, opens the device and runs the subcommand.
 * Returns the exit code instead of exiting, so tests can call it in-process.
 *
 * @module
 */

import { IommuError } from "../driver/iommu/errors.ts";
import {
  EXIT_FAILED,
  EXIT_OK,
  EXIT_USAGE,
  parseCommandLine,
  type ParsedCommand,
  UsageError,
} from "./args.ts";
import { conformCommand } from "./conform.ts";
import { type DeviceSession, deviceSpecFromFlags, openDevice } from "./device.ts";
import { type CliOutput, denoOutput, jsonLine, Painter, wantsColor } from "./format.ts";
import { helpText } from "./help.ts";
import { formatInfo, infoJson, type InfoReport } from "./info.ts";
import { denoTerminal, LineEditor, type Terminal } from "./line_editor.ts";
import { parseU32 } from "./numbers.ts";
import { formatProbe, probeJson } from "./probe.ts";
import { readLines, runShell } from "./shell.ts";
import { formatTopology, readTopology, topologyJson } from "./topology.ts";
import { formatTopologyTree, topologyTreeJson } from "./topology_tree.ts";
import denoConfig from "../deno.json" with { type: "json" };

/** The package version, from deno.json. */
export const VERSION: string = denoConfig.version;

/** Where the CLI reads and writes. */
export interface CliIo {
  /** Output streams. */
  output: CliOutput;
  /** Standard input, for the shell. */
  input: ReadableStream<Uint8Array>;
  /** The terminal for the interactive shell, or null when standard input is not one. */
  terminal: Terminal | null;
}

/** The real process's streams. */
export function denoIo(): CliIo {
  const output = denoOutput();
  const interactive = Deno.stdin.isTerminal() && output.isTerminal;
  return { output, input: Deno.stdin.readable, terminal: interactive ? denoTerminal() : null };
}

/** Runs `viommu` with `args` and returns the exit code (0 ok, 1 request failed, 2 usage). */
export async function main(args: string[], io: CliIo = denoIo()): Promise<number> {
  const painter = new Painter(wantsColor(io.output));
  let parsed: ParsedCommand;
  try {
    parsed = parseCommandLine(args);
  } catch (error) {
    return usage(io.output, error as UsageError, args.includes("--json"));
  }
  const { command, positionals, flags } = parsed;
  if (flags.version) {
    io.output.out(
      flags.json
        ? jsonLine({ cmd: "version", ok: true, version: VERSION, deno: Deno.version.deno })
        : `viommu ${VERSION} (Deno ${Deno.version.deno})\n`,
    );
    return EXIT_OK;
  }
  if (flags.help || command === null) {
    io.output.out(helpText(command));
    return flags.help ? EXIT_OK : EXIT_USAGE;
  }
  const cmd = command;
  let session: DeviceSession | null = null;
  try {
    if (command !== "probe" && positionals.length > 0) {
      throw new UsageError(`${command} takes no arguments (got "${positionals.join(" ")}")`);
    }
    if (flags.tree && command !== "topology") {
      throw new UsageError(`--tree applies to topology only`);
    }
    let endpoint = 0;
    if (command === "probe") {
      if (positionals.length !== 1) throw new UsageError("Usage: viommu probe <endpoint>");
      endpoint = parseU32(positionals[0], "endpoint");
    }
    const spec = await deviceSpecFromFlags(flags);
    if (command === "topology") {
      const report = await readTopology(spec);
      io.output.out(
        flags.json
          ? jsonLine({
            cmd,
            ok: true,
            ...topologyJson(report),
            ...(flags.tree ? { tree: topologyTreeJson(report) } : {}),
          })
          : flags.tree
          ? formatTopologyTree(report, painter)
          : formatTopology(report, painter),
      );
      return EXIT_OK;
    }
    if (command === "conform") {
      const timeoutMs = flags.timeout === undefined
        ? undefined
        : parseU32(flags.timeout, "--timeout");
      return await conformCommand(spec, { ...flags, timeoutMs }, io.output, painter);
    }
    session = await openDevice(spec);
    const label = spec.kind === "mock" ? `mock (${spec.transport})` : `pci:${spec.bdf}`;
    if (command === "info") {
      const report: InfoReport = {
        device: label,
        layout: spec.layout,
        offeredFeatures: session.offeredFeatures,
        info: session.iommu.info,
      };
      io.output.out(
        flags.json ? jsonLine({ cmd, ok: true, ...infoJson(report) }) : formatInfo(report, painter),
      );
      return EXIT_OK;
    }
    if (command === "probe") {
      const result = await session.iommu.probe(endpoint);
      io.output.out(
        flags.json
          ? jsonLine({ cmd, ok: true, ...probeJson(result) })
          : formatProbe(result, painter),
      );
      return EXIT_OK;
    }
    // shell
    const ctx = { session };
    if (io.terminal !== null && !flags.json) {
      io.output.out(`viommu shell on ${label}; type help, Ctrl-D to leave\n`);
      const editor = new LineEditor(io.terminal);
      await runShell(ctx, editor.lines(painter.paint("bold", "viommu> ")), {
        json: false,
        output: io.output,
        painter,
      });
      return EXIT_OK;
    }
    return await runShell(ctx, readLines(io.input), {
      json: flags.json,
      output: io.output,
      painter,
    });
  } catch (error) {
    if (error instanceof UsageError) return usage(io.output, error, flags.json, cmd);
    return failed(io.output, error, flags.json, cmd, painter);
  } finally {
    if (session !== null) await session.close();
  }
}

function usage(output: CliOutput, error: UsageError, json: boolean, cmd?: string): number {
  if (json) {
    output.out(jsonLine({ cmd: cmd ?? null, ok: false, status: "USAGE", message: error.message }));
  } else {
    output.err(`viommu: ${error.message}\n(see viommu ${cmd ?? ""}${cmd ? " " : ""}--help)\n`);
  }
  return EXIT_USAGE;
}

function failed(
  output: CliOutput,
  error: unknown,
  json: boolean,
  cmd: string,
  painter: Painter,
): number {
  const e = error instanceof Error ? error : new Error(String(error));
  // A device or driver refusal keeps its status; a missing Deno permission or root is
  // PERMISSION; anything else (no such device, a device the driver will not initialise) is a
  // plain ERROR.
  const status = e instanceof IommuError
    ? e.status
    : e.name === "PermissionProblem" || e.name === "HostPermissionError"
    ? "PERMISSION"
    : "ERROR";
  if (json) {
    output.out(jsonLine({ cmd, ok: false, status, error: e.name, message: e.message }));
  } else {
    output.err(painter.paint("red", `viommu ${cmd}: ${status}`) + ` ${e.message}\n`);
  }
  return EXIT_FAILED;
}
