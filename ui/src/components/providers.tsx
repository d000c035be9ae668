import { PasswordInput, Stack, TextInput } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { api, type List } from "../api/client";
import type { Provider } from "../api/types";

export function useProviders() {
  return useQuery({
    queryKey: ["providers"],
    queryFn: async () => (await api<List<Provider>>("GET", "/providers")).data,
    staleTime: Infinity,
  });
}

/** The config form of a provider, generated from its catalog entry. */
export function ProviderConfigFields({
  provider,
  value,
  onChange,
  errorAt,
  idPrefix = "",
  editing,
  readOnly,
}: {
  provider: Provider | undefined;
  value: Record<string, string>;
  onChange: (v: Record<string, string>) => void;
  errorAt: (field: string) => string | undefined;
  idPrefix?: string;
  editing?: boolean;
  readOnly?: boolean;
}) {
  if (!provider) return null;
  return (
    <Stack gap="sm">
      {provider.configFields.map((f) => {
        const props = {
          label: f.name,
          description:
            f.description +
            (f.name === "baseUrl" && provider.defaultBaseUrl ? ` (default ${provider.defaultBaseUrl})` : "") +
            (f.secret && editing ? " — leave ******** to keep the stored one" : ""),
          required: f.required,
          value: value[f.name] ?? "",
          onChange: (e: React.ChangeEvent<HTMLInputElement>) =>
            onChange({ ...value, [f.name]: e.currentTarget.value }),
          error: errorAt(`config.${f.name}`),
          name: `${idPrefix}config.${f.name}`,
          disabled: readOnly,
          autoComplete: "off",
        };
        return f.secret ? (
          <PasswordInput key={f.name} {...props} />
        ) : (
          <TextInput key={f.name} {...props} />
        );
      })}
    </Stack>
  );
}

/** config without empty optional members */
export function cleanConfig(c: Record<string, string>): Record<string, string> {
  const o: Record<string, string> = {};
  for (const [k, v] of Object.entries(c)) if (v !== "") o[k] = v;
  return o;
}
