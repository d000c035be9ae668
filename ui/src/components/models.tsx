import { Autocomplete, Group, Select } from "@mantine/core";
import type { Connection, ModelRef } from "../api/types";
import { useProviders } from "./providers";

export /** A connection and one of its models. */
function ModelPicker({
  value,
  onChange,
  connections,
  field,
  errorAt,
  label,
  readOnly,
}: {
  value: ModelRef;
  onChange: (v: ModelRef) => void;
  connections: Connection[];
  field: string;
  errorAt: (f: string) => string | undefined;
  label: string;
  readOnly?: boolean;
}) {
  const providers = useProviders();
  const conn = connections.find((c) => c.id === value.connectionId);
  const models = conn?.allowedModels?.length
    ? conn.allowedModels
    : providers.data?.find((p) => p.id === conn?.provider)?.defaultModels ?? [];
  return (
    <Group grow align="flex-start" wrap="wrap">
      <Select
        label={`${label}: connection`}
        data={connections.map((c) => ({ value: c.id, label: `${c.name} (${c.provider})` }))}
        value={value.connectionId || null}
        onChange={(id) => {
          const c = connections.find((x) => x.id === id);
          onChange({ ...value, connectionId: id ?? "", provider: c?.provider ?? value.provider });
        }}
        error={errorAt(`${field}.connectionId`) ?? errorAt(`${field}.provider`)}
        allowDeselect={false}
        disabled={readOnly}
        miw={180}
      />
      <Autocomplete
        label={`${label}: model`}
        data={models}
        value={value.model}
        onChange={(m) => onChange({ ...value, model: m })}
        error={errorAt(`${field}.model`) ?? (errorAt(field) && !errorAt(`${field}.`) ? errorAt(field) : undefined)}
        disabled={readOnly}
        miw={180}
      />
    </Group>
  );
}
