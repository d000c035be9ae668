import { PageHeader } from "../components/common";

export default function Roles() {
  return <PageHeader title="Roles (not built yet)" />;
}
