"""moto's server with IAM checked on Glue's own resources, as AWS does (enough for the tests).

    python moto_glue_iam.py -H 127.0.0.1 -p PORT     (moto_server's arguments)

moto 5.1.22, IAM enforced, authorizes every Glue request against the resource
"*": a policy whose Resource lists Glue ARNs (catalog, database/DB,
table/DB/*) allows nothing. And it denies with the query protocol's XML error
(HTTP 403), which a Glue client (JSON 1.1 protocol) reads as error code "403",
not AccessDeniedException. Before starting the server, this gives moto's
GlueResponse:
  - the ARN of what a request names: its table, else its database, else the
    catalog (AWS checks all three; the policies under test grant all three);
  - Glue's denial: HTTP 400, {"__type": "AccessDeniedException", "message": ...}.
"""

import json

from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.glue.responses import GlueResponse
from moto.server import main


def glue_resource(self):
    params = json.loads(self.body or "{}")
    arn = f"arn:aws:glue:{self.region}:{self.current_account}"
    database = params.get("DatabaseName")
    table = params.get("Name") or params.get("TableInput", {}).get("Name")
    if database and table:
        return f"{arn}:table/{database}/{table}"
    database = database or params.get("Name") or params.get("DatabaseInput", {}).get("Name")
    return f"{arn}:database/{database}" if database else f"{arn}:catalog"


authorize = GlueResponse._authenticate_and_authorize_normal_action


def authorize_as_glue(self, resource="*"):
    try:
        authorize(self, resource)
    except AccessDeniedError as e:
        raise JsonRESTError("AccessDeniedException", e.message) from None


GlueResponse._determine_resource = glue_resource
GlueResponse._authenticate_and_authorize_normal_action = authorize_as_glue

if __name__ == "__main__":
    main()
